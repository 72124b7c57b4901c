"""Tasks: what transferred video models are trained and measured for (``TASKS``: classify, retrieve,
ground, caption, qa, and ``multi``: several at once), plus embedding and zero-shot classification with aligned
models."""

from xmodal.tasks.base import TASKS, Task
from xmodal.tasks import caption, classify, ground, qa, retrieve  # noqa: F401,E402  (registration)
from xmodal.tasks import multi  # noqa: F401,E402  (registration, after the tasks it combines)
from xmodal.tasks.embed import Embedded, embed  # noqa: E402
from xmodal.tasks.zeroshot import DEFAULT_TEMPLATES, ZeroShotResult, build_zero_shot_classifier, score, zeroshot  # noqa: E402

__all__ = ["DEFAULT_TEMPLATES", "TASKS", "Embedded", "Task", "ZeroShotResult", "build_zero_shot_classifier", "embed",
           "score", "zeroshot"]
