"""The contrast-curve figure: calibrated and raw curves per truncation, companions marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["MIN_THROUGHPUT", "contrast_figure"]

#: calibrated points below this throughput (deep inside the occulter) are not drawn: dividing by ~0 is not a limit
MIN_THROUGHPUT = 0.05


def contrast_figure(
    rows: Sequence[Mapping[str, Any]],
    companions: Sequence[Mapping[str, Any]] = (),
    *,
    title: str = "",
    sigma: float = 5.0,
    max_arcsec: float = 5.0,
) -> Any:
    """Plot contrast versus separation (arcsec), one colour per truncation.

    Parameters
    ----------
    rows : sequence of mapping
        The contrast table's rows (``truncation``, ``separation_arcsec``, ``raw_contrast``,
        ``contrast``).
    companions : sequence of mapping
        Measured companions (``separation_arcsec``, ``contrast``, ``snr``, ``truncation``).
    title : str
        Figure title.
    sigma : float
        The curves' significance, for the axis label.
    max_arcsec : float
        Largest separation shown (the table has them all).

    Returns
    -------
    matplotlib.figure.Figure
        Not shown and not saved (``files.save_figure`` writes it).
    """
    from matplotlib.figure import Figure  # deferred: matplotlib costs ~0.3 s to import

    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot()
    truncations = list(dict.fromkeys(int(r["truncation"]) for r in rows))
    colours = [f"C{i}" for i in range(len(truncations))]
    for k, colour in zip(truncations, colours, strict=True):
        sel = [r for r in rows if int(r["truncation"]) == k]
        sep = np.array([r["separation_arcsec"] for r in sel])
        calibrated = np.array([r["contrast"] if r["throughput"] >= MIN_THROUGHPUT else np.nan for r in sel])
        ax.plot(sep, calibrated, color=colour, label=f"KL {k} (throughput-corrected)")
        ax.plot(sep, [r["raw_contrast"] for r in sel], color=colour, ls="--", lw=0.8, alpha=0.7)
    labelled = set()
    for c in companions:
        k = truncations.index(int(c["truncation"])) if int(c["truncation"]) in truncations else 0
        ax.plot(c["separation_arcsec"], c["contrast"], marker="*", ms=11, color=colours[k], mec="k", ls="none")
        where = (round(c["separation_arcsec"], 2), round(np.log10(c["contrast"]), 1))
        if where in labelled:  # one label per companion, not one per truncation
            continue
        labelled.add(where)
        ax.annotate(
            f"S/N {c['snr']:.1f}",
            (c["separation_arcsec"], c["contrast"]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    ax.set_yscale("log")
    ax.set_xlim(0, min(max_arcsec, max((r["separation_arcsec"] for r in rows), default=max_arcsec)))
    ax.set_xlabel("separation (arcsec)")
    ax.set_ylabel(f"{sigma:g}-sigma contrast (dashed: raw)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
