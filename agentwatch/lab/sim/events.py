"""Building :class:`~agentwatch.schemas.ActionEvent` objects from the generator's values."""

from __future__ import annotations

from typing import Any, Final

from agentwatch.schemas.events import ActionEvent

__all__ = ["construct", "validated"]

# Every ActionEvent field in declaration order, with its default (``None`` for required ones,
# which the generator always sets): a copy updated with an event's values is exactly the
# ``__dict__`` pydantic's validation would build.
_EVENT_TEMPLATE: Final[dict[str, Any]] = {
    name: (None if info.is_required() else info.get_default(call_default_factory=True))
    for name, info in ActionEvent.model_fields.items()
}
_new_object = object.__new__
_set_attr = object.__setattr__


def construct(values: dict[str, Any]) -> ActionEvent:
    """Build an :class:`ActionEvent` from trusted values without validating them.

    Equal (``==`` and byte-identical on the wire) to ``ActionEvent(**values)``; the tests
    hold the two paths to that.
    """
    data = _EVENT_TEMPLATE.copy()
    data.update(values)
    attrs = values.get("attributes")
    data["attributes"] = dict(attrs) if attrs else {}
    event: ActionEvent = _new_object(ActionEvent)
    _set_attr(event, "__dict__", data)
    _set_attr(event, "__pydantic_fields_set__", set(values))
    _set_attr(event, "__pydantic_extra__", None)
    _set_attr(event, "__pydantic_private__", None)
    return event


def validated(values: dict[str, Any]) -> ActionEvent:
    """Build an :class:`ActionEvent` through pydantic validation."""
    return ActionEvent(**values)
