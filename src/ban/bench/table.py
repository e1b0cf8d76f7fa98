"""`Table`: a titled grid of strings rendered as Markdown, CSV or LaTeX."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "±": r"$\pm$"}


def _latex(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(c, c) for c in text)


@dataclass
class Table:
    """Rows of cells under `headers`; `note` explains the cells (printed under the table)."""

    name: str
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.headers)
        writer.writerows(self.rows)
        return buf.getvalue()

    def to_latex(self) -> str:
        cols = "l" + "c" * (len(self.headers) - 1)
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{_latex(self.title)}}}",
            rf"\label{{tab:{self.name}}}",
            rf"\begin{{tabular}}{{{cols}}}",
            r"\toprule",
            " & ".join(_latex(h) for h in self.headers) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join(_latex(c) for c in row) + r" \\" for row in self.rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"
