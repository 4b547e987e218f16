"""The AgentBrain seam: what decides what the agent says, at turn granularity.

A brain sees the conversation as a few typed events — the call started, the user
finished a turn, a key was pressed, the user stayed silent, the bot was interrupted,
a tool answered, the call ended — and answers each with a stream of actions: say this
(text, possibly streamed in pieces), set a variable, move to a node, call a tool,
transfer, end the call. Everything below the brain (VAD, turns, STT, TTS, barge-in,
the transport) stays flowcat's; a brain never sees a frame and never runs on the
per-frame path.

Implementations: the graph agent, a plain LLM brain, :class:`RemoteBrain` (HTTP) and
:class:`WebSocketBrain` (``docs/brains-remote.md``). ``BrainProcessor`` runs one in a pipeline (see ``docs/agents.md``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "AgentBrain",
    "BrainAction",
    "BrainCall",
    "BrainEvent",
    "BotInterrupted",
    "CallEnded",
    "CallStarted",
    "CallTool",
    "Dtmf",
    "EndCall",
    "Say",
    "SetVariable",
    "Silence",
    "ToolResult",
    "Transfer",
    "Transition",
    "UserTurn",
]


# ------------------------------------------------------------------ the call


@dataclass
class BrainCall:
    """What a brain knows about its call. One per call; the brain may keep it.

    Attributes:
        call_id: flowcat's id of the call (also in log lines).
        caller: The caller's number or identity, if the transport knows it.
        callee: The number or agent called, if known.
        transport: ``"twilio"``, ``"webrtc"``, ``"sip"``, ``"console"`` ...
        variables: Per-call variables: seeded from the config and the transport
            (custom parameters), then set by the brain (:class:`SetVariable`).
    """

    call_id: str
    caller: str | None = None
    callee: str | None = None
    transport: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ events in


@dataclass(frozen=True)
class CallStarted:
    """The call is connected: the brain may greet (bot-first) or stay silent."""

    call: BrainCall


@dataclass(frozen=True)
class UserTurn:
    """The user finished a turn.

    Attributes:
        text: The final transcript of the whole turn (may be empty: noise, a cough).
        language: BCP-47 language of the transcript, if the STT said.
        interrupted_bot: The turn began while the bot was speaking (a barge-in).
    """

    text: str
    language: str | None = None
    interrupted_bot: bool = False


@dataclass(frozen=True)
class Dtmf:
    """The caller pressed keys (``"0"``, ``"*"``, ``"1234#"``: aggregated digits)."""

    digits: str


@dataclass(frozen=True)
class Silence:
    """The user has said nothing for ``seconds`` since the bot finished speaking.

    Sent once per silence period and threshold (``count`` counts the re-prompts so far
    in a row, from 1), so a brain can re-prompt, then give up.
    """

    seconds: float
    count: int = 1


@dataclass(frozen=True)
class BotInterrupted:
    """The user talked over the bot; ``spoken`` is what of the last reply was heard."""

    spoken: str


@dataclass(frozen=True)
class ToolResult:
    """A tool the brain asked for (:class:`CallTool`) has answered (or failed)."""

    tool_call_id: str
    name: str
    result: Any
    error: str | None = None


@dataclass(frozen=True)
class CallEnded:
    """The call is over (``reason``: ``"hangup"``, ``"ended_by_agent"``, ``"error"`` ...).

    No action a brain yields for it is carried out; it is for bookkeeping.
    """

    reason: str


BrainEvent: TypeAlias = CallStarted | UserTurn | Dtmf | Silence | BotInterrupted | ToolResult | CallEnded


# ------------------------------------------------------------------ actions out


@dataclass(frozen=True)
class Say:
    """Speak ``text``. Several ``Say`` s in a row are one reply, spoken in order
    (a streaming brain yields sentence pieces as they come).

    Attributes:
        text: What to say (plain text; the TTS's sentence aggregation applies).
        allow_interruptions: Whether the user may barge in on it.
    """

    text: str
    allow_interruptions: bool = True


@dataclass(frozen=True)
class SetVariable:
    """Set a per-call variable (kept in :attr:`BrainCall.variables`, reported at the end)."""

    name: str
    value: Any


@dataclass(frozen=True)
class Transition:
    """The brain moved to another state (a graph node); recorded in the call's path."""

    node: str


@dataclass(frozen=True)
class CallTool:
    """Run a registered tool (a function or an MCP tool); its answer comes back as a
    :class:`ToolResult` event with the same ``tool_call_id``."""

    tool_call_id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transfer:
    """Hand the call to ``target`` (a number, SIP URI or queue name), after ``say``."""

    target: str
    say: str | None = None


@dataclass(frozen=True)
class EndCall:
    """End the call after ``say`` has been spoken; ``disposition`` is reported."""

    say: str | None = None
    disposition: str | None = None


BrainAction: TypeAlias = Say | SetVariable | Transition | CallTool | Transfer | EndCall


# ------------------------------------------------------------------ the seam


class AgentBrain(ABC):
    """Decides what the agent does, one event at a time.

    A brain is created per call (a factory makes one for each). ``handle`` is called
    for each event in order, never concurrently for one call: the next event waits
    until the previous stream of actions is exhausted or abandoned. When the user
    barges in, the runner stops iterating the current stream (``aclose``) and sends
    :class:`BotInterrupted` then the new :class:`UserTurn`; a brain must tolerate
    being closed mid-stream. A brain that raises, hangs past its deadline or yields
    something that is not an action gets a spoken fallback from the runner and the
    call goes on.
    """

    @abstractmethod
    def handle(self, event: BrainEvent) -> AsyncIterator[BrainAction]:
        """The actions answering ``event`` (an async generator)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the brain holds (connections); called once when the call ends."""
