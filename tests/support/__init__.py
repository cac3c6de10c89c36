"""
Test support for the suite and for scripts/ alike (nothing here is a test; the fixtures
built on it are in tests/conftest.py):

* ``timing``: ``MS``, the unit test timeouts are written in.
* ``data``: the files in tests/data and the recorded Coze traces among them.
* ``ports``: free loopback ports.
* ``signals``: test signals (sine tones) and what a signal's dominant frequency is.
* ``session``: a core ``Session`` driven into each state, for the core's tests.
* ``daemon``: the real daemon in this process against the simulator, and the config
  builder every test and script uses for it.
* ``cli``: the real ``coze-edge`` command as a subprocess (one helper starts every one).
* ``pulseaudio``: a private PulseAudio server with null sinks (real PortAudio streams).
* ``jwt_app``: a Coze JWT app with an RSA key pair made in the test, and the vendor's
  token service in front of a simulator that knows its public key.
* ``simulator_clients``: plain loopback clients (httpx, websockets) for the simulator's
  own tests.
* ``mosquitto``: a real MQTT broker and its command-line clients.
* ``hostile``: a scriptable server (HTTP and WebSocket on one loopback port) that
  redirects, refuses or quotes back what it was sent, and records every request.
* ``soak``: turns as fast as they go, with memory, file descriptor and task samples.
* ``pypi``: a loopback stand-in for PyPI's JSON API (the update check).
"""
