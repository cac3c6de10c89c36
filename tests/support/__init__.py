"""
Test support for the suite and for scripts/ alike (nothing here is a test):

* ``timing``: ``MS``, the unit test timeouts are written in.
* ``data``: the files in tests/data and the recorded Coze traces among them.
* ``ports``: free loopback ports.
* ``signals``: test signals (sine tones) and what a signal's dominant frequency is.
* ``pulseaudio``: a private PulseAudio server with null sinks (real PortAudio streams).
* ``simulator_clients``: plain loopback clients (httpx, websockets) for the simulator's
  own tests.
* ``mosquitto``: a real MQTT broker and its command-line clients.
"""
