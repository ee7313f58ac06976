"""Airfoils from closed forms, and writers of Selig and Lednicer files, for the airfoil and shape tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def naca4(code: str, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower surfaces (n, 2) of a NACA 4-digit airfoil, each from the leading to the trailing edge.

    The closed-trailing-edge form: y_t = 5t(0.2969 sqrt(x) - 0.1260 x - 0.3516 x^2 + 0.2843 x^3 - 0.1036 x^4),
    thickness applied perpendicular to the camber line; x cosine-spaced in [0, 1].
    """
    m, p, t = int(code[0]) / 100, int(code[1]) / 10, int(code[2:]) / 100
    x = 0.5 * (1 - np.cos(np.linspace(0, np.pi, n)))
    yt = 5 * t * (0.2969 * np.sqrt(x) - 0.1260 * x - 0.3516 * x**2 + 0.2843 * x**3 - 0.1036 * x**4)
    if m == 0:
        yc, slope = np.zeros_like(x), np.zeros_like(x)
    else:
        front = x < p
        yc = np.where(front, m / p**2 * (2 * p * x - x**2), m / (1 - p) ** 2 * (1 - 2 * p + 2 * p * x - x**2))
        slope = np.where(front, 2 * m / p**2 * (p - x), 2 * m / (1 - p) ** 2 * (p - x))
    theta = np.arctan(slope)
    upper = np.stack([x - yt * np.sin(theta), yc + yt * np.cos(theta)], 1)
    lower = np.stack([x + yt * np.sin(theta), yc - yt * np.cos(theta)], 1)
    return upper, lower


def selig(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Selig order: trailing edge, upper surface, leading edge (once), lower surface, trailing edge."""
    return np.concatenate([upper[::-1], lower[1:]])


def write_selig(path: Path, points: np.ndarray, name: str = "test airfoil") -> Path:
    lines = [name] + [f"{x:.8f} {y:.8f}" for x, y in points]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_lednicer(path: Path, upper: np.ndarray, lower: np.ndarray, name: str = "test airfoil") -> Path:
    """Lednicer: name, counts line, blank, upper LE->TE, blank, lower LE->TE (both list the leading edge)."""
    lines = [name, f"{len(upper)}.  {len(lower)}.", ""]
    lines += [f"  {x:.8f}  {y:.8f}" for x, y in upper] + [""]
    lines += [f"  {x:.8f}  {y:.8f}" for x, y in lower]
    path.write_text("\n".join(lines) + "\n")
    return path


def transform(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Rotate by ``angle`` (radians), scale and translate points (M, 2)."""
    c, s = np.cos(angle), np.sin(angle)
    return scale * points @ np.array([[c, s], [-s, c]]) + np.asarray(shift)


def formula_properties(code: str) -> dict[str, float]:
    """Max vertical thickness and max camber of the formula, and their x, on a 20001-point grid."""
    upper, lower = naca4(code, 20001)
    grid = np.linspace(0, 1, 20001)
    yu, yl = np.interp(grid, upper[:, 0], upper[:, 1]), np.interp(grid, lower[:, 0], lower[:, 1])
    thick, camber = yu - yl, (yu + yl) / 2
    it, ic = thick.argmax(), np.abs(camber).argmax()
    return {"thickness": thick[it], "thickness_x": grid[it], "camber": camber[ic], "camber_x": grid[ic]}
