"""The admission plugins that make a namespace a team's tenant, in the order they run:
LimitRange defaults and bounds (may change the pod), Pod Security, then ResourceQuota (last,
so it counts the pod as it will be stored)."""

from __future__ import annotations

from kumo.platform.api.admission import AdmissionPlugin
from kumo.platform.api.limitranger import LimitRanger
from kumo.platform.api.podsecurity import PodSecurity
from kumo.platform.api.quota import ResourceQuotaAdmission
from kumo.platform.store.sqlite import SQLiteStore


def tenancy_plugins(store: SQLiteStore) -> list[AdmissionPlugin]:
    return [LimitRanger(store), PodSecurity(store), ResourceQuotaAdmission(store)]
