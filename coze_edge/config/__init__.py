"""
The configuration: one YAML file plus ``COZE_EDGE_*`` overrides, turned into frozen dataclasses.

* :mod:`~coze_edge.config.schema`: the sections, their defaults and documentation, and what
  makes a value wrong.
* :mod:`~coze_edge.config.loader`: reading the file, the overrides, resolving what was left
  unset, and one :class:`ConfigError` listing every problem with its dotted key.
* :mod:`~coze_edge.config.secrets`: secrets from ``*_file`` keys or systemd credentials,
  never from the file itself.

Everything a caller needs is importable from here (``from coze_edge.config import Config``).
"""

from coze_edge.config.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    DEFAULT_MACHINE_ID,
    ENV_PREFIX,
    config_from_mapping,
    load_config,
    resolve_config_path,
)
from coze_edge.config.schema import (
    DEFAULT_STATE_DIR,
    DEFAULT_TOPIC_PREFIX,
    DEVICE_ID_PLACEHOLDER,
    REGION_HOSTS,
    AudioConfig,
    AuthConfig,
    Config,
    CozeConfig,
    DeviceConfig,
    HomeAssistantConfig,
    HooksConfig,
    LogConfig,
    MqttConfig,
    ToolsConfig,
    VadConfig,
    WakeConfig,
)
from coze_edge.config.secrets import CREDENTIAL_KEYS, read_secret, warn_if_world_readable
from coze_edge.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "CREDENTIAL_KEYS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_MACHINE_ID",
    "DEFAULT_STATE_DIR",
    "DEFAULT_TOPIC_PREFIX",
    "DEVICE_ID_PLACEHOLDER",
    "ENV_PREFIX",
    "REGION_HOSTS",
    "AudioConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "CozeConfig",
    "DeviceConfig",
    "HomeAssistantConfig",
    "HooksConfig",
    "LogConfig",
    "MqttConfig",
    "ToolsConfig",
    "VadConfig",
    "WakeConfig",
    "config_from_mapping",
    "load_config",
    "read_secret",
    "resolve_config_path",
    "warn_if_world_readable",
]
