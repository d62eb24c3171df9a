"""A model-driven loop that pauses for a person's approval, then resumes.

`delete_note` needs approval. The `fail_closed` handler leaves the request pending, so the
run pauses; a person (here, this script after asking on the terminal, or the APPROVE
environment variable) decides, and `async_continue_with` resumes the loop where it stopped.

    export OPENAI_API_KEY=sk-...
    python examples/approval.py

Settings (environment): AGENTLY_PLANNER_OPTION_MODEL (default gpt-4.1-mini),
AGENTLY_PLANNER_OPTION_BASE_URL, APPROVE (yes/no, to answer without a terminal).
"""

import asyncio
import os
import sys

import agently_core

notes = {"groceries": "milk, eggs", "draft": "an old draft nobody needs"}

agent = agently_core.create_agent("notes")


@agent.action_func
def list_notes() -> list[str]:
    """The names of the notes."""
    return sorted(notes)


@agent.action_func(approval_required=True)
def delete_note(name: str) -> str:
    """Delete a note.

    Args:
        name: The note's name.
    """
    notes.pop(name)
    return f"deleted {name}"


agent.use_actions(["list_notes", "delete_note"])
agent.approval.set_default("fail_closed")  # pending: a person decides later
agent.set_planner("openai_compatible",
                  model=os.environ.get("AGENTLY_PLANNER_OPTION_MODEL", "gpt-4.1-mini"))


async def main() -> int:
    result = await agent.async_run("Delete the note called draft.", max_rounds=4)
    if result.stop_reason == "approval_required":
        execution = agent.last_execution
        waiting = [r for r in result.records if r.status == "approval_required"]
        print(f"waiting for approval: {[(r.action, r.kwargs) for r in waiting]}")
        answer = os.environ.get("APPROVE") or input("approve? [yes/no] ")
        decision = "approved" if answer.strip().lower() in ("y", "yes") else "denied"
        result = await execution.async_continue_with(decision, resume_request_id="ticket-1",
                                                     actor="you")
    print(result.response if result.stop_reason == "response" else f"stopped: {result.error}")
    print(f"notes left: {sorted(notes)}")
    await agent.aclose()
    return 0 if result.stop_reason == "response" else 1


sys.exit(asyncio.run(main()))
