"""coze-edge: a voice-assistant daemon for edge devices, speaking to Coze."""

__version__ = "0.1.0"
