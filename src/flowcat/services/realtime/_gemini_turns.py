"""The server's side of a Gemini Live session: its messages (``serverContent``, ``toolCall``,
``toolCallCancellation``, ``sessionResumptionUpdate``, ``goAway``, ``usageMetadata``) mapped onto
the realtime seam (turns, transcripts, tool calls, session renewal). How they map is in the
docstring of :mod:`flowcat.services.realtime.gemini`, whose service extends :class:`GeminiLiveTurns`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import TYPE_CHECKING, Any

from ...frames import LLMTokenUsage, UserStoppedSpeakingFrame
from .._realtime import RealtimeLLMService
from .._realtime_state import ConversationItem
from ._gemini_wire import _KNOWN, _seconds, _usage

if TYPE_CHECKING:
    from .gemini import GeminiLiveLLMSettings

logger = logging.getLogger("flowcat.services.realtime.gemini")

GO_AWAY_MARGIN_SECS = 1.0
"""A turn still running this long before a ``goAway`` deadline is cut by the renewal."""


class GeminiLiveTurns(RealtimeLLMService):
    """The server's messages of a Gemini Live session (the base of
    :class:`~flowcat.services.realtime.GeminiLiveLLMService`, which adds the client's side)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resumption_handle: str | None = None
        """The last resumable ``newHandle`` (used by the next connection)."""
        self._call_names: dict[str, str] = {}
        self._tool_reply = False  # results went up since the last response request
        self._turn: str | None = None  # the model turn being received
        self._turns = 0
        self._said: list[str] = []  # the model's transcript of the current turn
        self._heard: list[str] = []  # fragments of the caller's transcript
        self._usage: LLMTokenUsage | None = None  # the usageMetadata of the message being handled

    @property
    def s(self) -> GeminiLiveLLMSettings:
        return self._settings  # type: ignore[return-value]

    def event_kind(self, event: dict[str, Any]) -> str | None:
        for key in _KNOWN:
            if key in event:
                return key
        return next(iter(event), None)  # an unknown message: ignored, not malformed

    async def handle_event(self, event: dict[str, Any]) -> None:
        raw_usage = event.get("usageMetadata")
        self._usage = _usage(raw_usage) if raw_usage is not None else None  # turnComplete takes it
        content = event.get("serverContent")
        if content is not None:
            await self._server_content(content)
        if "toolCall" in event:
            await self._on_tool_call(event["toolCall"])
        if "toolCallCancellation" in event:
            for call_id in event["toolCallCancellation"].get("ids") or ():
                if await self.cancel_function_call(str(call_id), "withdrawn by the model"):
                    logger.info("%s: the model withdrew tool call %s", self.name, call_id)
        if "sessionResumptionUpdate" in event:
            update = event["sessionResumptionUpdate"]
            if update.get("resumable") and update.get("newHandle"):
                self.resumption_handle = str(update["newHandle"])
        if "goAway" in event:
            await self._go_away(event["goAway"].get("timeLeft"))
        usage, self._usage = self._usage, None
        if usage is not None:  # not taken by a turn's end
            await self.start_llm_usage_metrics(usage)

    async def _go_away(self, time_left: Any) -> None:
        """Renew the session now, or when the running turn ends, but before the deadline anyway."""
        secs = _seconds(time_left)
        logger.info("%s: goAway (%s s left): renewing the session", self.name, secs)
        await self.renew_session()
        if self._renew_due and secs is not None:
            if self._cap_task is not None:  # the session cap: this renewal comes first
                await self.cancel_task(self._cap_task)
            self._cap_task = self.create_task(
                self._renew_by(max(0.0, secs - GO_AWAY_MARGIN_SECS)),
                f"{self.name}_go_away",
                generation_bound=False,
            )

    async def _renew_by(self, secs: float) -> None:
        await asyncio.sleep(secs)
        if self._renew_due:
            logger.info("%s: the goAway deadline is near: renewing during the turn", self.name)
            await self._end_response()  # the turn will not complete on the new connection
            await self._renew()

    async def _server_content(self, content: dict[str, Any]) -> None:
        if content.get("interrupted"):
            await self._interrupted()
        heard = (content.get("inputTranscription") or {}).get("text")
        if heard:
            if self._server_vad and not self._user_speaking and self._turn is None:
                await self.on_speech_started()
            self._heard.append(str(heard))
            await self.start_ttfb_metrics()
        for part in (content.get("modelTurn") or {}).get("parts") or ():
            data = (part.get("inlineData") or {}).get("data")
            if data is not None:
                try:
                    pcm = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    self.bad_input("modelTurn audio that is not base64", None)
                    continue
                await self.on_audio(await self._turn_id(), self._turn or "", pcm)
            elif part.get("text") and not part.get("thought") and "AUDIO" not in self.s.modalities:
                await self.on_text(await self._turn_id(), str(part["text"]), spoken=False)
                self._said.append(str(part["text"]))
        said = (content.get("outputTranscription") or {}).get("text")
        if said:
            rid = await self._turn_id()
            if self._live(rid):
                self._said.append(str(said))
            await self.on_text(rid, str(said), spoken=True)
        if content.get("generationComplete") and self._turn is not None:
            await self.on_audio_done(self._turn)
        if content.get("turnComplete"):
            await self._turn_complete()

    async def _turn_id(self) -> str:
        """The model turn being received (its first output starts it and ends the caller's turn)."""
        if self._turn is None:
            self._turns += 1
            self._turn = f"turn_{self._turns}"
            self._said = []
            self._tool_reply = False
            if self._user_speaking:
                self._user_speaking = False
                await self.broadcast_frame(UserStoppedSpeakingFrame)
            await self.on_response_started(self._turn)
        return self._turn

    async def _flush_heard(self) -> None:
        text, self._heard = "".join(self._heard), []
        await self.on_user_transcript(text)

    async def _interrupted(self) -> None:
        if self._server_vad and not self._user_speaking:
            await self.on_speech_started()  # the barge-in, the interruption both ways
        else:
            await self._barge_in()

    async def _turn_complete(self) -> None:
        turn, self._turn = self._turn, None
        if turn is None or not self._live(turn):
            if turn is not None:  # cut by a barge-in: keep what was received before the cut
                said, self._said = "".join(self._said), []
                self.conversation.add(ConversationItem("assistant", said))
                await self.on_response_done(turn, "cancelled", None)
            return
        await self._flush_heard()
        await self.on_text_done(turn, "".join(self._said))
        self._said = []
        usage, self._usage = self._usage, None
        await self.on_response_done(turn, "completed", usage)

    async def _on_tool_call(self, body: dict[str, Any]) -> None:
        rid = await self._turn_id()
        await self._flush_heard()
        if self._said:
            await self.on_text_done(rid, "".join(self._said))
            self._said = []
        for call in body.get("functionCalls") or ():
            call_id, name = str(call.get("id") or ""), str(call["name"])
            self._call_names[call_id] = name
            await self.on_function_call(rid, call_id, name, json.dumps(call.get("args") or {}))
        self._turn = None  # the calls run now; the model answers after their results
        await self.on_response_done(rid, "completed", None)

