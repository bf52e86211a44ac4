"""Chart helpers: tick locators restricted to the view draw exactly what the full ones draw."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
from matplotlib.ticker import LogLocator, MultipleLocator

from hashpivot.optimizer.charts import in_view, new_figure

#: matplotlib's SVG ids are salted hashes: equal drawings differ only in them.
SVG_ID = re.compile(r"\b[mp][0-9a-f]{10}\b")


def _svg(wrap: bool) -> str:
    fig, ax = new_figure(4.0, 3.0)
    ax.plot([2027.0, 2031.5], [30.0, 3000.0])
    ax.set_xlim(2026.95, 2031.8)
    ax.set_yscale("log")
    ax.set_ylim(30.0, 3000.0)
    x_loc, y_loc = MultipleLocator(1.0), LogLocator(base=10, subs=(1.0, 2.0, 5.0))
    ax.xaxis.set_major_locator(in_view(x_loc) if wrap else x_loc)
    ax.yaxis.set_major_locator(in_view(y_loc) if wrap else y_loc)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return SVG_ID.sub("ID", buf.getvalue())


def test_in_view_drops_only_ticks_beyond_the_view() -> None:
    fig, ax = new_figure(4.0, 3.0)
    ax.set_xlim(0.5, 3.5)
    ax.xaxis.set_major_locator(MultipleLocator(1.0))
    full = ax.xaxis.get_majorticklocs()
    assert full.min() < 0.5 and full.max() > 3.5  # the plain locator overshoots the view
    ax.xaxis.set_major_locator(in_view(MultipleLocator(1.0)))
    np.testing.assert_array_equal(ax.xaxis.get_majorticklocs(), [1.0, 2.0, 3.0])
    ax.set_xlim(3.5, 0.5)  # inverted axis
    np.testing.assert_array_equal(ax.xaxis.get_majorticklocs(), [1.0, 2.0, 3.0])


def test_in_view_draws_the_same_svg() -> None:
    assert _svg(wrap=True) == _svg(wrap=False)


def test_preload_imports_matplotlib_once_in_the_background() -> None:
    code = (
        "import sys\n"
        "from hashpivot.optimizer.charts import preload_matplotlib\n"
        "assert 'matplotlib' not in sys.modules\n"
        "t = preload_matplotlib()\n"
        "assert t is not None and preload_matplotlib() is None\n"
        "t.join()\n"
        "print('matplotlib.figure' in sys.modules, 'matplotlib.backends.backend_svg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]
