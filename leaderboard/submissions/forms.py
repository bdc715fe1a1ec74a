"""The submission form: what the model is, where it comes from, and which benchmarks to run."""
from pathlib import Path

from django import forms
from django.conf import settings

from leaderboard import engine
from leaderboard.registry.models import Dataset, Result

from .models import Submission
from .services import SubmissionRequest

READOUT_HELP = engine.readout_help()


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
    builtin_model = forms.CharField(
        label="Model", required=False, max_length=300,
        widget=forms.TextInput(attrs={"list": "model-names", "autocomplete": "off", "spellcheck": "false",
                                      "placeholder": "efficientnet_lite0 or hf-hub:ORG/NAME", "class": "model-name"}),
        help_text="A built-in model (its ImageNet weights ship with Shelfmark), or a Hugging Face Hub id "
                  "<code>hf-hub:ORG/NAME[@REVISION]</code> of a timm, OpenCLIP or transformers model (only its "
                  "safetensors and configuration are fetched; nothing from the repository runs). With random "
                  "initialisation, any architecture: <code>resnet50</code>, <code>timm:ARCH</code>, "
                  "<code>open_clip:ARCH</code>.",
    )
    random_init = forms.BooleanField(label="Random initialisation (no pretrained weights)", required=False)
    architecture = forms.CharField(
        label="Architecture (for a weights file)", required=False, max_length=300,
        widget=forms.TextInput(attrs={"list": "architecture-names", "autocomplete": "off", "spellcheck": "false",
                                      "placeholder": "resnet50, timm:ARCH or open_clip:ARCH", "class": "model-name"}),
        help_text="An engine architecture, <code>timm:ARCH</code> (any architecture of timm) or "
                  "<code>open_clip:ARCH</code> (an OpenCLIP model's image tower).",
    )
    upload = forms.FileField(
        label="File", required=False,
        help_text="Weights (safetensors or a torch.save state_dict), a model folder (.zip of config.json, "
                  "model.safetensors and preprocessor_config.json, or timm's / OpenCLIP's layout), an ONNX "
                  "model, or features (.npz keyed by image id).",
    )
    readout = forms.ChoiceField(
        label="Features", required=False, choices=[("", "the model family's default")] + [
            (name, f"{name}: {text}") for name, text in READOUT_HELP.items()],
        help_text="What the feature vector is read from: OpenCLIP (projected, unprojected) and transformers "
                  "models (cls, mean, cls+mean, last4_cls, pooler). timm and engine models take a layer instead.",
    )
    layer = forms.CharField(
        label="Layer", required=False, max_length=200, widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text="Engine and timm models: a module's name (e.g. layer3) to take its output, pooled; "
                  "empty: the penultimate (pre-logits) features.")
    pooling = forms.ChoiceField(label="Pooling of a layer's maps or tokens", choices=[("avg", "average"),
                                                                                      ("max", "maximum")],
                                initial="avg", required=False)
    kind = forms.ChoiceField(choices=Result.Kind.choices, initial=Result.Kind.OFF_THE_SHELF,
                             help_text="Which column of the boards the result joins.")
    multiclass = forms.ChoiceField(
        label="Multi-class SVMs", choices=Submission.Multiclass.choices, initial=Submission.Multiclass.PAPER,
        widget=forms.RadioSelect, required=False,   # left out: as the paper
        help_text="How single-label benchmarks train their linear SVMs. The paper [1] used one-vs-one on some; "
                  "each result records the scheme it ran. Multi-label VOC 2007 always trains one SVM per class.",
    )
    protocols = forms.MultipleChoiceField(
        label="Protocols", required=False, widget=forms.CheckboxSelectMultiple,
        choices=[(name, title) for name, title, _ in engine.protocol_choices()],
        initial=["svm", "knn", "linear_probe", "ranking", "easy", "medium", "hard"],
        help_text="Each benchmark runs those of these it can: classification the SVMs of [1], weighted k-NN, the "
                  "linear probe and the 5-shot probe; retrieval the cosine ranking; Revisited Oxford and Paris "
                  "Easy, Medium and Hard. One result each, with its 95% interval; none ticked: the defaults.",
    )
    benchmarks = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="Each one becomes a job, run with that benchmark's official protocol.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.builtin_models = engine.builtin_models()
        if "efficientnet_lite0" in self.builtin_models:   # the demo model: ImageNet weights ship with the site
            self.fields["builtin_model"].initial = "efficientnet_lite0"
        self.engine_architectures = engine.engine_architectures()
        self.fields["benchmarks"].choices = benchmark_choices()
        # Shown beside the file input; the form script also checks a chosen file against it before upload.
        self.upload_limit = settings.SHELFMARK_MAX_UPLOAD_BYTES
        self.fields["upload"].widget.attrs["data-max-bytes"] = str(self.upload_limit)

    def clean(self):
        data = super().clean()
        source = data.get("source")
        Source = Submission.Source
        if source == Source.BUILTIN and not data.get("builtin_model"):
            self.add_error("builtin_model", "Choose a built-in model, or give a Hub id.")
        if source == Source.WEIGHTS and not data.get("architecture"):
            self.add_error("architecture", "Choose the architecture these weights are for.")
        needs_file = source in (Source.WEIGHTS, Source.MODEL_FOLDER, Source.ONNX, Source.FEATURES)
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
            architecture=(data["builtin_model"] if builtin else data.get("architecture", "")).strip(),
            readout=data.get("readout") or "", layer=(data.get("layer") or "").strip(),
            pooling=data.get("pooling") or "avg",
            random_init=data.get("random_init", False),
            upload=Path(upload.temporary_file_path()) if upload is not None and not builtin else None,
            upload_name=upload.name if upload is not None else "",
            description=data["description"], paper_url=data["paper_url"], bibtex=data["bibtex"], kind=data["kind"],
            multiclass=data.get("multiclass") or Submission.Multiclass.PAPER,
            protocols=list(data.get("protocols") or []),
            dedupe=True,   # a form sent twice (a reload, a double click) makes one submission
        )
