"""Where the physics behind the DAQ interfaces is chosen (``cfg.daq.front_end`` / ``trigger_logic``)."""

from __future__ import annotations

from collections.abc import Sequence

from pokerdaq.config import Config

from ._interfaces import FrontEndLogic, TriggerLogic


def make_front_end(cfg: Config, board: int, seed: int, group: Sequence[int] | None = None) -> FrontEndLogic:
    """The front-end logic of one board (cfg.daq.front_end).

    ``"physics"``: the emulator and pulse finder where hits put signal (:mod:`._sparse`);
    ``"physics-stream"``: the same over the whole continuous stream (:mod:`._physics`, the
    reference, same primitives and windows, ~100x slower); ``"synthetic"``: the development source.
    ``group``: the boards of the calling process (``board`` among them); the physics front ends
    of one group render and scan their boards together (:class:`._sparse.SparseGroup`).
    """
    if cfg.daq.front_end == "physics":
        from ._sparse import SparsePhysicsFrontEnd, sparse_group

        shared = sparse_group(cfg, tuple(group), seed) if group is not None else None
        if cfg.daq.mode == "streaming":  # the sparse front end that also cuts L0 hits
            from ._streaming import StreamingFrontEnd

            return StreamingFrontEnd(cfg, board, seed, group=shared)
        return SparsePhysicsFrontEnd(cfg, board, seed, group=shared)
    if cfg.daq.front_end == "physics-stream":
        from ._physics import PhysicsFrontEnd

        return PhysicsFrontEnd(cfg, board, seed)
    from ._synthetic import SyntheticFrontEnd

    return SyntheticFrontEnd(cfg, board, seed)


def make_trigger_logic(cfg: Config, seed: int) -> TriggerLogic:
    """The trigger logic of the trigger processor: ``"synthetic"`` or ``"physics"`` (cfg.daq.trigger_logic)."""
    if cfg.daq.trigger_logic == "physics":
        from ._physics import PhysicsTrigger

        return PhysicsTrigger(cfg, seed)
    from ._synthetic import SyntheticTrigger

    return SyntheticTrigger(cfg, seed)
