"""A flow as a Mermaid flowchart, for reviewing a flow's shape with people who do not read
TOML (``intake flows graph FLOW``)."""

from __future__ import annotations

from bot.conversation.model import FLOW_PREFIX, Flow, FlowSet, StepType

_SHAPES = {
    StepType.OPEN: ("[[", "]]"),
    StepType.END: ("([", "])"),
}


def _label(text: str, limit: int = 48) -> str:
    """A node label: one line, short, with characters Mermaid would misread replaced."""
    flat = " ".join(text.split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return flat.replace('"', "'").replace("{", "(").replace("}", ")")


def mermaid(flows: FlowSet, flow: Flow) -> str:
    """Return a Mermaid ``flowchart TD`` of ``flow``: one node per step (``s_`` + its id, so
    no id clashes with a Mermaid keyword), showing its type and English prompt; one edge per
    branch, labelled with its conditions; entering another flow is a node of its own.
    Guarantees the output is deterministic for a given flow."""
    lines = ["flowchart TD"]
    for current in flow.steps.values():
        text = flows.text("en", current.key, flow)
        opening, closing = _SHAPES.get(current.type, ("[", "]"))
        title = f"{current.id} ({current.type.value})"
        if current.type is StepType.END and current.outcome is not None:
            title = f"{current.id} ({current.outcome.value})"
        lines.append(f'    s_{current.id}{opening}"{title}<br/>{_label(text)}"{closing}')
    entered: set[str] = set()
    for current in flow.steps.values():
        for branch in current.branches:
            target = f"s_{branch.goto}"
            if branch.goto.startswith(FLOW_PREFIX):
                name = branch.goto[len(FLOW_PREFIX) :]
                target = f"flow_{name}"
                if target not in entered:
                    entered.add(target)
                    lines.append(f'    {target}>"enter flow {name}"]')
            condition = " and ".join(
                f"{step} = {'/'.join(values)}" for step, values in branch.conditions.items()
            )
            arrow = f"-->|{_label(condition, 60)}|" if condition else "-->"
            lines.append(f"    s_{current.id} {arrow} {target}")
    return "\n".join(lines)
