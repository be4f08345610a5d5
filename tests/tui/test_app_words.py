"""What the app says in words, on the fixed mesh (no network): counts, who answered."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.waiting import wait_until
from tui.asking import Answer
from tui.widgets.answer_pane import AnswerPane
from tui.wire import Connected

sys.path.insert(0, str(Path(__file__).parent / "snapshot_apps"))
from fixed_mesh import PEERS, SELF, CannedAsker, make_app

pytestmark = pytest.mark.anyio

BOREALIS = PEERS[0]


class RoutedAsker(CannedAsker):
    """Answers as the mesh router does: `mesh_ask`, with the serving peer's id and name."""

    async def ask(self, prompt: str, on_text, *, trace_id: str) -> Answer:  # type: ignore[no-untyped-def]
        await on_text(self.ANSWER)
        details = {"peer": BOREALIS.id, "peer_name": BOREALIS.name, "usage": {"completion_tokens": 17, "tokens_per_s": 41.5}}
        return Answer(text=self.ANSWER, tool="mesh_ask", trace_id=trace_id, details=details)


async def test_the_title_counts_one_peer_in_the_singular_and_more_in_the_plural() -> None:
    for peers, words in ((PEERS[:1], "1 peer"), (PEERS, "4 peers")):
        app = make_app((Connected(card=SELF, peers=peers),))
        async with app.run_test(size=(120, 36)):
            await wait_until(lambda: "·" in app.sub_title, "the watched node in the title")  # noqa: B023 - awaited in this iteration
            assert app.sub_title == f"atlas ({SELF.id}) · {words} · http://127.0.0.1:8801"


async def test_the_answer_footer_names_the_peer_that_served_it() -> None:
    app = make_app(asker=RoutedAsker())
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("slash", *"what is mDNS?", "enter")
        pane = app.query_one(AnswerPane)
        await wait_until(lambda: "trace" in pane.status and not pane.status.startswith("asking"), "the answer's footer")
        assert pane.status == f"mesh_ask · by borealis ({BOREALIS.id[:8]}) · 17 tok, 41.5 tok/s · trace 000a11ce"
