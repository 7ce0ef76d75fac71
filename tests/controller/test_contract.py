"""controller/service.py is the contract the API, gitd, hooks and the runner
code against: every public method of the concrete controller is in it (or
named below as internal plumbing), with the same parameters, and none of
its methods is left a stub."""
from __future__ import annotations

import inspect

from controller.service import Controller
from controller.store import Store

# Public on the store for the wiring and the store's own mixins, not part of
# what other packages call by contract.
INTERNAL = {"close", "deployer", "on_revoke", "prune_slugs", "reencrypt_all",
            "release_config", "running_versions", "throttle", "user_by_email",
            "webhook_rules", "webhook_sender"}


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def _shape(fn: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_every_public_method_is_in_the_contract() -> None:
    missing = _public(Store) - _public(Controller) - INTERNAL
    assert not missing, f"not in controller/service.py: {sorted(missing)}"


def test_contract_and_implementation_agree() -> None:
    for name in sorted(_public(Controller)):
        contract, concrete = getattr(Controller, name), getattr(Store, name)
        assert concrete is not contract, f"{name} is only the contract's stub"
        assert _shape(concrete) == _shape(contract), (
            f"{name}: contract {inspect.signature(contract)} "
            f"vs implementation {inspect.signature(concrete)}")
