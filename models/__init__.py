"""Targets, tasks, datasets and the trained zoo; imports none of attacks, defenses, benchmark."""

from robustgrid.core import RobustgridError
from robustgrid.models import iqa_task, segmentation_task  # noqa: F401  (register the "iqa" and "segmentation" tasks)
from robustgrid.models.target import TARGETS, Normalized, Target, register_target
from robustgrid.models.tasks import TASKS, Task, build_task

__all__ = ["RobustgridError", "TARGETS", "Normalized", "Target", "register_target", "TASKS", "Task", "build_task"]

# the built-in zoo registers its targets on import (timm itself is imported lazily)
import robustgrid.models.classifiers  # noqa: E402, F401
import robustgrid.models.iqa_models  # noqa: E402, F401
import robustgrid.models.iqa_zoo  # noqa: E402, F401
import robustgrid.models.segmenters  # noqa: E402, F401
