"""Template helpers: links to pages of other apps that may not exist yet, and score formatting."""
import re

from django import template
from django.urls import NoReverseMatch, reverse

from leaderboard.engine import protocol_title

register = template.Library()
HEX_DIGEST = re.compile(r"\b[0-9a-f]{40}(?:[0-9a-f]{24})?\b")   # a git/Hub commit (40) or a SHA-256 (64)


@register.simple_tag
def url_if_exists(name, *args):
    """`{% url_if_exists 'submission-new' as u %}`: the URL, or "" when the name does not resolve."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


@register.filter
def score(value):
    """Scores as the papers print them: one or two decimals (77.2, 82.44, 69.0)."""
    if value is None:
        return "—"
    text = f"{value:.2f}"
    return text.removesuffix("0")


@register.filter
def protocol_label(result) -> str:
    """"linear SVMs ([1]), one-vs-one", or "" for a number reported by a paper (no protocol run here)."""
    if not getattr(result, "protocol", ""):
        return ""
    return protocol_title(result.protocol) + (f", {result.protocol_detail}" if result.protocol_detail else "")


@register.inclusion_tag("front/_interval.html")
def interval(row):
    """The "± 0.62" beside a measured score (half its 95% interval), the interval in the title; nothing
    for a reported number. `row`: a Result or a frozen LeaderboardEntry."""
    low, high = getattr(row, "ci_low", None), getattr(row, "ci_high", None)
    if low is None or high is None:
        return {"margin": None}
    return {"margin": (high - low) / 2, "low": low, "high": high}


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None


# Keys shown first in a provenance summary, when present; the rest follow in their own order.
PROVENANCE_FIRST = ["model", "weights_sha256", "hub", "preprocessing", "readout", "multiclass", "code_version",
                    "protocol_version", "hardware", "device", "duration_s", "evaluated_at", "date"]


@register.filter
def preprocessing_summary(config) -> str:
    """A DataConfig dict in words: "shorter side to 256, centre crop 224, bicubic, mean 0.485/0.456/0.406, ..."."""
    if not isinstance(config, dict) or "input_size" not in config:
        return ""
    if config.get("resize_mode") == "squash":
        resize = f"resize to {config['resize_size']}×{config['resize_size']}"
    else:
        resize = f"shorter side to {config['resize_size']}"
    numbers = {key: "/".join(f"{float(v):.3g}" for v in config.get(key, ())) for key in ("mean", "std")}
    return (f"{resize}, centre crop {config['input_size']}, {config.get('interpolation', '')}, "
            f"mean {numbers['mean']}, std {numbers['std']}")


@register.filter
def provenance_summary(provenance, limit=6):
    """A short 'key: value' list of an evaluated result's provenance (hashes shortened)."""
    if not provenance or not isinstance(provenance, dict):
        return []
    keys = [k for k in PROVENANCE_FIRST if k in provenance] + [k for k in provenance if k not in PROVENANCE_FIRST]
    items = []
    for key in keys[: int(limit)]:
        value = provenance[key]
        if key == "preprocessing":
            value = preprocessing_summary(value)
        if isinstance(value, (dict, list)) or value in ("", None):   # nested, or nothing to say
            continue
        text = HEX_DIGEST.sub(lambda match: match.group(0)[:12] + "…", str(value))   # hashes, commits: shortened
        items.append((key.replace("_", " "), text))
    return items
