"""Stand-in for the CTK widgets the panel uses (PythonQt module ``ctk``), built on the ``qt`` stand-in."""

from __future__ import annotations

from . import qt_standin as qt


class ctkCollapsibleButton(qt.QAbstractButton):
    """A section header: ``collapsed`` hides its contents; ``contentsCollapsed(bool)`` on change."""

    SIGNALS = ("contentsCollapsed(bool)",)

    def __init__(self, parent: qt.QWidget | None = None) -> None:
        super().__init__("", parent)
        self._collapsed = False

    @property
    def collapsed(self) -> bool:
        return self._collapsed

    @collapsed.setter
    def collapsed(self, value: bool) -> None:
        if bool(value) != self._collapsed:
            self._collapsed = bool(value)
            self._signal("contentsCollapsed").emit(self._collapsed)

    def click(self) -> None:
        if self.enabled:
            self.collapsed = not self._collapsed
            self._signal("clicked").emit(not self._collapsed)


class ctkRangeWidget(qt.QWidget):
    """Two values within [minimum, maximum]; both are clamped into the bounds, as CTK does."""

    SIGNALS = ("valuesChanged(double,double)", "minimumValueChanged(double)", "maximumValueChanged(double)")

    def __init__(self, parent: qt.QWidget | None = None) -> None:
        super().__init__(parent)
        self._min, self._max = 0.0, 99.0
        self._lo, self._hi = 0.0, 99.0
        self.decimals = 2
        self.singleStep = 1.0
        self.suffix = ""

    def _round(self, v: float) -> float:
        return round(float(v), self.decimals)

    def _set(self, lo: float, hi: float) -> None:
        lo, hi = sorted((lo, hi))
        lo = self._round(min(max(lo, self._min), self._max))
        hi = self._round(min(max(hi, self._min), self._max))
        if (lo, hi) == (self._lo, self._hi):
            return
        moved_lo, moved_hi = lo != self._lo, hi != self._hi
        self._lo, self._hi = lo, hi
        if moved_lo:
            self._signal("minimumValueChanged").emit(lo)
        if moved_hi:
            self._signal("maximumValueChanged").emit(hi)
        self._signal("valuesChanged").emit(lo, hi)

    @property
    def minimumValue(self) -> float:
        return self._lo

    @minimumValue.setter
    def minimumValue(self, v: float) -> None:
        self._set(v, max(v, self._hi))

    @property
    def maximumValue(self) -> float:
        return self._hi

    @maximumValue.setter
    def maximumValue(self, v: float) -> None:
        self._set(min(v, self._lo), v)

    def setValues(self, lo: float, hi: float) -> None:
        self._set(lo, hi)

    @property
    def minimum(self) -> float:
        return self._min

    @minimum.setter
    def minimum(self, v: float) -> None:
        self.setRange(v, max(v, self._max))

    @property
    def maximum(self) -> float:
        return self._max

    @maximum.setter
    def maximum(self, v: float) -> None:
        self.setRange(min(v, self._min), v)

    def setRange(self, lo: float, hi: float) -> None:
        self._min, self._max = self._round(lo), self._round(max(lo, hi))
        self._set(self._lo, self._hi)


class ctkSliderWidget(qt.QDoubleSpinBox):
    pass


class ctkDoubleSpinBox(qt.QDoubleSpinBox):
    pass


class ctkComboBox(qt.QComboBox):
    pass


class ctkCheckBox(qt.QCheckBox):
    pass


class ctkMessageBox(qt.QMessageBox):
    """A dialog: a message with only OK is acknowledged; a question returns the next answer the test queued
    (a question the test did not expect fails it)."""

    ANSWERS: list[int] = []
    SHOWN: list[str] = []

    def __init__(self, parent: qt.QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = ""
        self.standardButtons = qt.QMessageBox.Ok
        self.icon = 0
        self.dontShowAgainSettingsKey = ""
        self.detailedText = ""

    def exec_(self) -> int:
        ctkMessageBox.SHOWN.append(f"{self.text}\n{self.detailedText}".strip())
        if self.standardButtons == qt.QMessageBox.Ok:
            return qt.QMessageBox.Ok
        if not ctkMessageBox.ANSWERS:
            raise AssertionError(f"a dialog the test did not expect: {self.text!r}")
        return ctkMessageBox.ANSWERS.pop(0)

    exec = exec_


# CTK classes that Slicer's parameterNodeWrapper (guiConnectors.py) names in its widget-type checks and the panel does
# not use: distinct types, so those ``type(w) in (...)`` checks stay exact. Any other ``ctk.X`` is an AttributeError,
# as in PythonQt's ``ctk`` module for a class CTK does not have.
class ctkCheckablePushButton(qt.QPushButton):
    pass


class ctkColorPickerButton(qt.QPushButton):
    pass


class ctkDirectoryButton(qt.QWidget):
    pass


class ctkDoubleRangeSlider(qt.QWidget):
    pass


class ctkDoubleSlider(qt.QWidget):
    pass


class ctkPathLineEdit(qt.QWidget):
    pass
