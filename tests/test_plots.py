"""Figures and tables land where LaTeX expects them, reproducibly."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from xalign_utils.plots import save_figure, save_table


def test_save_figure_is_byte_reproducible(tmp_path):
    def draw(folder):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        pdf = save_figure(fig, "line", folder)
        plt.close(fig)
        return pdf.read_bytes()

    first, second = draw(tmp_path / "a"), draw(tmp_path / "b")
    assert first == second and first.startswith(b"%PDF")
    assert (tmp_path / "a" / "line.png").exists()


def test_save_table_writes_booktabs_and_csv(tmp_path):
    tex = save_table(pd.DataFrame({"method": ["a_b"], "value": [0.12345]}), "t", tmp_path)
    body = tex.read_text()
    assert "\\toprule" in body and "a\\_b" in body and "0.123" in body
    assert pd.read_csv(tmp_path / "t.csv")["value"].iloc[0] == 0.12345
