"""Shared by the contribution tests: two papers' BibTeX and the snapshot's folder."""
from pathlib import Path

SNAPSHOT_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "snapshot"

RAZAVIAN_BIB = """@inproceedings{Razavian2014,
  author = {Razavian, Ali Sharif and Azizpour, Hossein and Sullivan, Josephine and Carlsson, Stefan},
  title = {{CNN} Features off-the-shelf: an Astounding Baseline for Recognition},
  booktitle = {CVPR Workshops},
  year = {2014},
  doi = {10.1109/CVPRW.2014.131},
  eprint = {1403.6382},
  archivePrefix = {arXiv}
}
"""

DINO_BIB = """@article{Oquab2023,
  author = {Oquab, Maxime and Darcet, Timoth{\\'e}e and Moutakanni, Th{\\'e}o},
  title = {{DINOv2}: Learning Robust Visual Features without Supervision},
  journal = {Transactions on Machine Learning Research},
  year = {2024},
  eprint = {2304.07193},
  archivePrefix = {arXiv}
}
"""
