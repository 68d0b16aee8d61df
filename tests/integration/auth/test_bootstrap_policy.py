"""The default policy is created at start and reconciled like Kubernetes does: objects
marked autoupdate get back what they lost (nothing is removed); others are left alone."""

from __future__ import annotations

from pathlib import Path

from kumo.platform.api.access import reconcile_bootstrap_policy
from kumo.platform.store.sqlite import SQLiteStore

ROLES = "registry/rbac.authorization.k8s.io/clusterroles/"
BINDINGS = "registry/rbac.authorization.k8s.io/clusterrolebindings/"


async def test_reconcile_restores_lost_rules_and_subjects(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "store.db")
    try:
        await reconcile_bootstrap_policy(store)
        names = {e.key[len(ROLES) :] for e in store.entries(ROLES)}
        assert {"cluster-admin", "admin", "edit", "view", "system:discovery"} <= names
        view = store.get_entry(ROLES + "view")
        assert view is not None
        original = view.obj["rules"]
        # someone trims "view" and adds a rule of their own
        trimmed = {
            **view.obj,
            "rules": [
                *original[1:],
                {"apiGroups": ["x.io"], "resources": ["things"], "verbs": ["get"]},
            ],
        }
        await store.update(ROLES + "view", trimmed, view.revision)
        # someone opts "edit" out of reconciliation and empties it
        edit = store.get_entry(ROLES + "edit")
        assert edit is not None
        opted_out = {**edit.obj, "rules": []}
        opted_out["metadata"] = {
            **edit.obj["metadata"],
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "false"},
        }
        await store.update(ROLES + "edit", opted_out, edit.revision)
        # and adds a subject to a default binding, removing the one it had
        binding = store.get_entry(BINDINGS + "system:discovery")
        assert binding is not None
        extra = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "auditors"}
        await store.update(
            BINDINGS + "system:discovery", {**binding.obj, "subjects": [extra]}, binding.revision
        )
        revision = store.revision
        await reconcile_bootstrap_policy(store)
        assert store.revision > revision
        rules = store.get_entry(ROLES + "view").obj["rules"]  # type: ignore[union-attr]
        assert all(rule in rules for rule in original)
        assert {"apiGroups": ["x.io"], "resources": ["things"], "verbs": ["get"]} in rules
        assert store.get_entry(ROLES + "edit").obj["rules"] == []  # type: ignore[union-attr]
        subjects = store.get_entry(BINDINGS + "system:discovery").obj["subjects"]  # type: ignore[union-attr]
        assert extra in subjects
        assert any(s["name"] == "system:authenticated" for s in subjects)
        # a second pass with nothing lost writes nothing
        revision = store.revision
        await reconcile_bootstrap_policy(store)
        assert store.revision == revision
        assert store.prefix_revision("registry/rbac.authorization.k8s.io/") == revision
    finally:
        await store.close()
