from __future__ import annotations

from pathlib import Path

import pytest

from llmos.control.plane import ControlPlane
from llmos.errors import Conflict
from llmos.settings import Settings


def test_one_control_plane_per_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    first = ControlPlane(settings, url="http://127.0.0.1:9")
    first.start()
    second = ControlPlane(settings, url="http://127.0.0.1:9")
    try:
        with pytest.raises(Conflict, match="already running"):
            second.start()
    finally:
        first.stop()
    second.start()  # the lock went with the first plane
    second.stop()
