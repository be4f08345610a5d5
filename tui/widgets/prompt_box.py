"""The prompt box: one line where the user asks the mesh a question."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

__all__ = ["PromptBox"]


class PromptBox(Input):
    """Posts `Asked` with the text on Enter, then clears itself; escape goes back to the panes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.focus_panes", "Back to panes")]

    class Asked(Message):
        """The user asked something."""

        def __init__(self, prompt: str) -> None:
            super().__init__()
            self.prompt = prompt

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="Ask the mesh… (Enter sends)", id=id, compact=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        prompt = event.value.strip()
        if prompt:
            self.post_message(self.Asked(prompt))
            self.clear()
