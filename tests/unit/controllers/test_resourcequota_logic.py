"""The resourcequota controller's pure rule: the status a quota should show."""

from __future__ import annotations

from decimal import Decimal

from kumo.platform.controllers import CONTROLLERS
from kumo.platform.controllers.resourcequota import ResourceQuotaController, quota_status


def test_status_copies_hard_and_formats_used_for_every_hard_resource() -> None:
    quota = {"spec": {"hard": {"pods": "10", "requests.memory": "2Gi", "requests.cpu": "2"}}}
    used = {"pods": Decimal(3), "requests.memory": Decimal(3 * 2**29), "other": Decimal(1)}
    assert quota_status(quota, used) == {
        "hard": {"pods": "10", "requests.memory": "2Gi", "requests.cpu": "2"},
        "used": {"pods": "3", "requests.cpu": "0", "requests.memory": "1536Mi"},
    }


def test_registered() -> None:
    assert CONTROLLERS["resourcequota"] is ResourceQuotaController
