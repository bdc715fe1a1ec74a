"""The submission form: what the model is, where it comes from, and which benchmarks to run."""
from pathlib import Path

from django import forms
from django.conf import settings

from leaderboard import engine
from leaderboard.registry.models import Dataset, Result

from .models import Submission
from .services import SubmissionRequest


def benchmark_choices() -> list[tuple[str, str]]:
    runnable = set(engine.runnable_benchmarks())
    datasets = Dataset.objects.filter(engine_benchmark__in=runnable).order_by("order", "name")
    return [(d.engine_benchmark, f"{d.name} ({d.engine_benchmark})") for d in datasets]


class SubmissionForm(forms.Form):
    model_name = forms.CharField(max_length=200, help_text="Shown on the leaderboard, e.g. “ResNet-50 (ImageNet-1k)”.",
                                 widget=forms.TextInput(attrs={"autocomplete": "off"}))
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False,
                                  help_text="Training data, layer used, anything a reader needs.")
    paper_url = forms.URLField(label="Paper link", required=False, max_length=500, assume_scheme="https",
                               widget=forms.URLInput(attrs={"placeholder": "https://arxiv.org/abs/…"}))
    bibtex = forms.CharField(label="BibTeX", widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
                             required=False)
    source = forms.ChoiceField(choices=Submission.Source.choices, widget=forms.RadioSelect,
                               initial=Submission.Source.BUILTIN)
    builtin_model = forms.ChoiceField(label="Built-in model", required=False)
    random_init = forms.BooleanField(label="Random initialisation (no pretrained weights)", required=False)
    architecture = forms.ChoiceField(label="Architecture (for a weights file)", required=False)
    upload = forms.FileField(
        label="File", required=False,
        help_text="Weights (safetensors or a torch.save state_dict), an ONNX model, "
                  "or features (.npz keyed by image id).",
    )
    kind = forms.ChoiceField(choices=Result.Kind.choices, initial=Result.Kind.OFF_THE_SHELF,
                             help_text="Which column of the boards the result joins.")
    multiclass = forms.ChoiceField(
        label="Multi-class SVMs", choices=Submission.Multiclass.choices, initial=Submission.Multiclass.PAPER,
        widget=forms.RadioSelect, required=False,   # left out: as the paper
        help_text="How single-label benchmarks train their linear SVMs. The paper [1] used one-vs-one on some; "
                  "each result records the scheme it ran. Multi-label VOC 2007 always trains one SVM per class.",
    )
    benchmarks = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="Each one becomes a job, run with that benchmark's official protocol.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        builtins = engine.builtin_models()
        self.fields["builtin_model"].choices = [("", "—")] + [(m, m) for m in builtins]
        if "efficientnet_lite0" in builtins:   # the demo model: ImageNet weights ship with the site
            self.fields["builtin_model"].initial = "efficientnet_lite0"
        self.fields["architecture"].choices = [("", "—")] + [(m, m) for m in engine.architectures()]
        self.fields["benchmarks"].choices = benchmark_choices()
        # Shown beside the file input; the form script also checks a chosen file against it before upload.
        self.upload_limit = settings.SHELFMARK_MAX_UPLOAD_BYTES
        self.fields["upload"].widget.attrs["data-max-bytes"] = str(self.upload_limit)

    def clean(self):
        data = super().clean()
        source = data.get("source")
        Source = Submission.Source
        if source == Source.BUILTIN and not data.get("builtin_model"):
            self.add_error("builtin_model", "Choose a built-in model.")
        if source == Source.WEIGHTS and not data.get("architecture"):
            self.add_error("architecture", "Choose the architecture these weights are for.")
        needs_file = source in (Source.WEIGHTS, Source.ONNX, Source.FEATURES)
        if needs_file and not data.get("upload"):
            self.add_error("upload", "This kind of submission needs a file.")
        return data

    def to_request(self, owner) -> SubmissionRequest:
        data = self.cleaned_data
        upload = data.get("upload")
        source = data["source"]
        builtin = source == Submission.Source.BUILTIN
        return SubmissionRequest(
            owner=owner, model_name=data["model_name"], source=source, benchmarks=list(data["benchmarks"]),
            architecture=data["builtin_model"] if builtin else data.get("architecture", ""),
            random_init=data.get("random_init", False),
            upload=Path(upload.temporary_file_path()) if upload is not None and not builtin else None,
            upload_name=upload.name if upload is not None else "",
            description=data["description"], paper_url=data["paper_url"], bibtex=data["bibtex"], kind=data["kind"],
            multiclass=data.get("multiclass") or Submission.Multiclass.PAPER,
        )
