"""Targets, tasks, datasets and the trained zoo; imports none of attacks, defenses, benchmark."""

from models.errors import RobustgridError
from models.target import TARGETS, Normalized, Target, register_target
from models.tasks import TASKS, Task, build_task

__all__ = ["RobustgridError", "TARGETS", "Normalized", "Target", "register_target", "TASKS", "Task", "build_task"]
