"""Model types and chat templates, as data with register()/get()/names()."""

from swiftcli.registry import models, templates, vision_models
from swiftcli.registry.models import ModelInfo, ModelType, get_default_template_type
from swiftcli.registry.templates import Template, TemplateSpec, TemplateType, get_template

__all__ = [
    "ModelInfo",
    "ModelType",
    "Template",
    "TemplateSpec",
    "TemplateType",
    "get_default_template_type",
    "get_template",
    "models",
    "templates",
    "vision_models",
]
