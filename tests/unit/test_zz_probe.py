from __future__ import annotations
import random
from datetime import timedelta
from hypothesis import given, settings, strategies as st
from tests.unit.test_engine import NOW, NOW_MS, LANGUAGES, simulate_service, flows  # noqa
from bot.conversation.engine import Reply, Session, StepInput, step
TEXTS = ["0", "1", "2", "3", "4", "5", "6", "1 3", "yes", "no", "skip", "24/12", "Kyiv", "/help"]

@settings(database=None, deadline=None, max_examples=100)
@given(rnd=st.randoms(use_true_random=False), language=st.sampled_from(LANGUAGES))
def test_offered_buttons(flows, rnd: random.Random, language):
    session = Session(language=language, touched_at=NOW_MS)
    now = NOW
    offered = ()
    for turn in range(30):
        now += rnd.choice([timedelta(seconds=20)] * 3 + [timedelta(minutes=40)])
        button = rnd.choice(offered) if offered and rnd.random() < 0.5 else None
        text = "" if button else rnd.choice(TEXTS)
        result = step(flows, session, StepInput(text, button=button), now)
        if button and button.split(":")[0] in flows.flows:
            bad = {flows.text(session.language, "stale_button"), flows.text(session.language, "intro", flows.flows["intake"])}
            assert not [e for e in result.effects if isinstance(e, Reply) and e.text in bad], button
        session = simulate_service(result.session, result.effects, f"R{turn}")
        offered = tuple(c.data for e in result.effects if isinstance(e, Reply) for c in e.choices)
