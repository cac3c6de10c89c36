"""
The bundled Coze simulator: REST (OAuth device flow, bind device, voices, conversations)
and the ``/v1/chat`` voice WebSocket on one port, for the demo, the tests and development.

Shaped after coze-protocol.md and the recorded traces (proven with the official cozepy
client in tests/test_simulator_cozepy.py). It does no speech recognition: a committed
utterance (or, with server VAD, one its voice detection ended) is "heard" as the
configured ``transcript``. The reply is the real Coze reply of
the recorded trace (text, sentence starts and audio, in the trace's uneven delta sizes),
streamed ``reply_speed`` times faster than real time. Where the protocol notes mark
behaviour as inferred, the choice made here is noted beside the code.

The parts, one module each:

* ``server``         the ``Simulator``: one port, lifecycle, test helpers; ``serve()``
* ``faults``         the switches a test flips to make Coze misbehave
* ``oauth``          device codes, the token endpoint, the /device page; bearer tokens
* ``rest``           the REST envelope and logid, bind device, voices, conversation create
* ``conversations``  the conversation ids it issued, per bot
* ``chat``           the /v1/chat handshake and the server side of each voice session
* ``plugins``        a turn answered with a device-side plugin call (``Faults.tool_call``)
* ``reply``          the recorded reply and its pacing
* ``vad``            server-side voice detection (``turn_detection: server_vad``)
* ``ids``            logids and resource ids shaped like the real server's
"""

from coze_edge.simulator.chat import ChatConnection
from coze_edge.simulator.faults import REAL_EXPIRY, Faults, TokenFault
from coze_edge.simulator.plugins import ToolCallTurn
from coze_edge.simulator.server import Simulator, serve

__all__ = [
    "REAL_EXPIRY",
    "ChatConnection",
    "Faults",
    "Simulator",
    "TokenFault",
    "ToolCallTurn",
    "serve",
]
