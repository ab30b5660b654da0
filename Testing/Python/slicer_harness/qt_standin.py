"""Stand-in for PythonQt's ``qt`` module: the widget behaviour a scripted module relies on, without Qt.

Faithful to PythonQt where the module depends on it, and no kinder: Qt properties read and written as
attributes (``label.text = "x"``), and nothing else (PythonQt refuses new attributes on a C++ object);
``connect("signal(args)", slot)`` finds the signal by its normalized signature only (anything else warns and
connects nothing, as PythonQt), and ``widget.signal.connect(slot)``; slots called with as many arguments as
they accept; int properties and int slot arguments converted as PythonQt converts them; signals emitted
synchronously when a value changes (and only then). A ``QTimer`` does not tick by itself: the test drives it
with ``fire()``.
"""

from __future__ import annotations

import ctypes
import inspect
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

# connect() calls that PythonQt would refuse (the slot would never fire); the session fails a test that made one
REFUSED_CONNECTIONS: list[str] = []
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def _arity(slot: Callable) -> int | None:
    """How many positional arguments ``slot`` takes (None: any number)."""
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def normalized_signature(signature: str) -> str:
    """``QMetaObject::normalizedSignature``: no blanks but between words, ``const T&`` as ``T``."""
    s = re.sub(r"\s+", " ", signature.strip())
    s = re.sub(r"\s*([(),*&<>])\s*", r"\1", s)
    s = re.sub(r"\bconst ([\w:]+)&", r"\1", s)
    return s


def int_property(value) -> int:
    """A Python int written to an ``int`` Qt property: PythonQtConv::PyObjToQVariant(value, QMetaType::Int) calls
    ``PyObjGetInt``, which takes ``PyLong_AS_LONG(val)`` into an ``int``: out of range it wraps, silently."""
    return ctypes.c_int(int(value)).value


def int_argument(value, slot: str) -> int:
    """A Python int passed to an ``int`` slot argument: PythonQtConv::ConvertPythonToQt (QMetaType::Int) takes
    ``PyObjGetLongLong`` and accepts it only ``if (ok && (val >= INT_MIN && val <= INT_MAX))``; otherwise no
    overload matches and the call raises."""
    v = int(value)
    if not INT_MIN <= v <= INT_MAX:
        raise TypeError(f"{slot}: could not convert {v} to int (no overload matches)")
    return v


class Signal:
    """A bound signal: ``connect``/``disconnect``/``emit``; slots get as many arguments as they take."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.slots: list[Callable] = []

    def connect(self, slot: Callable) -> bool:
        self.slots.append(slot)
        return True

    def disconnect(self, slot: Callable | None = None) -> bool:
        if slot is None:
            self.slots.clear()
            return True
        if slot in self.slots:
            self.slots.remove(slot)
            return True
        return False

    def emit(self, *args) -> None:
        for slot in list(self.slots):
            n = _arity(slot)
            slot(*(args if n is None else args[:n]))


class _Wrapped(type):
    """After construction no new public attribute may appear: PythonQtInstanceWrapper_setattro answers a name that
    is no property, slot or dynamic property of a wrapped C++ object with AttributeError ("'x' does not exist on
    ... and creating new attributes on C++ objects is not allowed")."""

    def __call__(cls, *args, **kwargs):
        obj = super().__call__(*args, **kwargs)
        object.__setattr__(obj, "_sealed", True)
        return obj


class QObject(metaclass=_Wrapped):
    """Objects with a name, a parent, dynamic properties and signals known by their full signature."""

    SIGNALS: tuple[str, ...] = ("destroyed()", "destroyed(QObject*)", "objectNameChanged(QString)")
    _sealed = False

    def __init__(self, parent: QObject | None = None) -> None:
        object.__setattr__(self, "_signals", {})
        self._children: list[QObject] = []
        self._dynamic: dict[str, object] = {}
        self._parent = None
        self.objectName = ""
        if parent is not None:
            self.setParent(parent)

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_") or not self._sealed or name in vars(self) or hasattr(type(self), name):
            object.__setattr__(self, name, value)
        elif name in self._dynamic:
            self._dynamic[name] = value  # PythonQt: "handle dynamic properties"
        else:
            raise AttributeError(
                f"'{name}' does not exist on {type(self).__name__} and creating new attributes on C++ objects is "
                "not allowed"
            )

    def _signal(self, name: str) -> Signal:
        if name not in self._signals:
            self._signals[name] = Signal(name)
        return self._signals[name]

    @classmethod
    def signatures(cls) -> set[str]:
        """Every signal signature of the class (normalized)."""
        found = set()
        for c in cls.__mro__:
            found.update(normalized_signature(s) for s in vars(c).get("SIGNALS", ()))
        return found

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in {s.split("(")[0] for s in self.signatures()}:
            return self._signal(name)
        if name in self._dynamic:
            return self._dynamic[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def connect(self, signal: str, slot: Callable) -> bool:
        """PythonQtStdDecorators::connect: the signal must exist with this exact (normalized) argument list;
        otherwise ``std::cerr << "PythonQt: QObject::connect() signal '...' does not exist on ..."`` and False."""
        if normalized_signature(signal) not in self.signatures():
            message = f"PythonQt: QObject::connect() signal '{signal}' does not exist on {type(self).__name__}"
            print(message, file=sys.stderr)
            REFUSED_CONNECTIONS.append(message)
            return False
        return self._signal(signal.split("(")[0]).connect(slot)

    def disconnect(self, signal: str, slot: Callable | None = None) -> bool:
        return self._signal(signal.split("(")[0]).disconnect(slot)

    def emit(self, signal: str, *args) -> None:
        if normalized_signature(signal) not in self.signatures():
            raise AssertionError(f"the stand-in emits {signal}, which {type(self).__name__} does not declare")
        self._signal(signal.split("(")[0]).emit(*args)

    # names: PythonQt exposes objectName both as property and as ``name``
    @property
    def name(self) -> str:
        return self.objectName

    @name.setter
    def name(self, value: str) -> None:
        self.objectName = value

    def setObjectName(self, value: str) -> None:
        self.objectName = value

    def setParent(self, parent: QObject | None) -> None:
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def parent(self) -> QObject | None:
        return self._parent

    def children(self) -> list[QObject]:
        return list(self._children)

    def findChildren(self, cls: type = None) -> list[QObject]:
        found = []
        for c in self._children:
            if cls is None or isinstance(c, cls):
                found.append(c)
            found += c.findChildren(cls)
        return found

    def findChild(self, cls: type, name: str) -> QObject | None:
        return next((c for c in self.findChildren(cls) if c.objectName == name), None)

    def property(self, name: str):
        """QObject::property: a declared Qt property or a dynamic one; anything else is an invalid QVariant."""
        if name in self._dynamic:
            return self._dynamic[name]
        if name.startswith("_") or not (name in vars(self) or isinstance(getattr(type(self), name, None), property)):
            return None
        return getattr(self, name)

    def setProperty(self, name: str, value) -> bool:
        if name in vars(self) or isinstance(getattr(type(self), name, None), property):
            setattr(self, name, value)  # a Qt property
            return True
        self._dynamic[name] = value  # QObject::setProperty on an undeclared name: a dynamic property
        return False

    def className(self) -> str:
        return type(self).__name__

    def inherits(self, name: str) -> bool:
        return any(c.__name__ == name for c in type(self).__mro__)

    def isWidgetType(self) -> bool:
        return False

    def deleteLater(self) -> None:
        self.setParent(None)

    def blockSignals(self, block: bool) -> bool:
        return False


class QLayout(QObject):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__()
        self.items: list = []
        self._owner = None
        if parent is not None:
            parent.setLayout(self)

    def addWidget(self, widget: QWidget, *args) -> None:
        self.items.append(widget)
        if self._owner is not None:
            widget.setParent(self._owner)

    def addLayout(self, layout: QLayout, *args) -> None:
        self.items.append(layout)
        layout._adopt(self._owner)

    def addRow(self, *items) -> None:
        for item in items:
            if isinstance(item, QLayout):
                self.addLayout(item)
            elif isinstance(item, QWidget):
                self.addWidget(item)

    def addStretch(self, *args) -> None:
        pass

    def _adopt(self, owner: QWidget | None) -> None:
        self._owner = owner
        for item in self.items:
            if isinstance(item, QLayout):
                item._adopt(owner)
            elif owner is not None:
                item.setParent(owner)


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QFormLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


class QWidget(QObject):
    SIGNALS = ("customContextMenuRequested(QPoint)",)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.enabled = True
        self._visible = True
        self.toolTip = ""
        self.windowTitle = ""
        self._layout: QLayout | None = None

    def isWidgetType(self) -> bool:
        return True

    @property
    def visible(self) -> bool:
        return self._visible

    @visible.setter
    def visible(self, value: bool) -> None:
        self._visible = bool(value)

    def setVisible(self, value: bool) -> None:
        self.visible = value

    def show(self) -> None:
        self.visible = True

    def hide(self) -> None:
        self.visible = False

    def isVisible(self) -> bool:
        return self._visible

    def setEnabled(self, value: bool) -> None:
        self.enabled = bool(value)

    def isEnabled(self) -> bool:
        return self.enabled

    def setToolTip(self, text: str) -> None:
        self.toolTip = text

    def setLayout(self, layout: QLayout) -> None:
        self._layout = layout
        layout._adopt(self)

    def layout(self) -> QLayout | None:
        return self._layout

    def setSizePolicy(self, *args) -> None:
        pass

    def update(self) -> None:
        pass


class QFrame(QWidget):
    pass


class QLabel(QFrame):
    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = text
        self.wordWrap = False

    def setText(self, text: str) -> None:
        self.text = text


class QAbstractButton(QWidget):
    SIGNALS = ("clicked(bool)", "toggled(bool)", "pressed()", "released()")

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = text
        self.checkable = False
        self._checked = False

    @property
    def checked(self) -> bool:
        return self._checked

    @checked.setter
    def checked(self, value: bool) -> None:
        if not self.checkable or bool(value) == self._checked:
            return
        self._checked = bool(value)
        self._signal("toggled").emit(self._checked)
        self._state_changed()

    def _state_changed(self) -> None:
        pass

    def setChecked(self, value: bool) -> None:
        self.checked = value

    def isChecked(self) -> bool:
        return self._checked

    def setText(self, text: str) -> None:
        self.text = text

    def click(self) -> None:
        """What a user's click does: nothing when disabled, else toggle (if checkable) and ``clicked``."""
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self._checked
        self._signal("clicked").emit(self._checked)


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    pass


class QRadioButton(QAbstractButton):
    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.checkable = True

    def _state_changed(self) -> None:
        if self._checked and self._parent is not None:  # auto-exclusive among siblings
            for sibling in self._parent.children():
                if isinstance(sibling, QRadioButton) and sibling is not self and sibling.checked:
                    sibling.checked = False


class QCheckBox(QAbstractButton):
    SIGNALS = ("stateChanged(int)",)

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.checkable = True

    def _state_changed(self) -> None:
        self._signal("stateChanged").emit(2 if self._checked else 0)


class _Ranged(QWidget):
    """Spin boxes and sliders: ``value`` clamped into [minimum, maximum]; ``valueChanged`` on change only."""

    CAST: type = float

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._min, self._max, self._value = self.CAST(0), self.CAST(99), self.CAST(0)
        self.decimals = 2
        self.singleStep = self.CAST(1)
        self.suffix = ""
        self.prefix = ""

    def _round(self, v: float):
        return int_property(round(v)) if self.CAST is int else round(float(v), self.decimals)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v) -> None:
        v = self._round(min(max(v, self._min), self._max))
        if v != self._value:
            self._value = v
            self._signal("valueChanged").emit(v)

    def setValue(self, v) -> None:
        self.value = v

    @property
    def minimum(self):
        return self._min

    @minimum.setter
    def minimum(self, v) -> None:
        self.setRange(v, max(v, self._max))

    @property
    def maximum(self):
        return self._max

    @maximum.setter
    def maximum(self, v) -> None:
        self.setRange(min(v, self._min), v)

    def setMinimum(self, v) -> None:
        self.minimum = v

    def setMaximum(self, v) -> None:
        self.maximum = v

    def setRange(self, lo, hi) -> None:
        self._min, self._max = self._round(lo), self._round(max(lo, hi))
        self.value = self._value  # re-clamp (emits when it moved)


class QSpinBox(_Ranged):
    SIGNALS = ("valueChanged(int)",)
    CAST = int


class QSlider(QSpinBox):
    pass


class QDoubleSpinBox(_Ranged):
    SIGNALS = ("valueChanged(double)",)


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged(int)", "currentTextChanged(QString)", "activated(int)")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items: list[list] = []  # [text, data, tooltip]
        self._index = -1
        self.editable = False

    def _set_index(self, index: int) -> None:
        index = index if 0 <= index < len(self._items) else -1
        if index == self._index:
            return
        old_text = self.currentText
        self._index = index
        self._signal("currentIndexChanged").emit(index)
        if self.currentText != old_text:
            self._signal("currentTextChanged").emit(self.currentText)

    @property
    def count(self) -> int:
        return len(self._items)

    @property
    def currentIndex(self) -> int:
        return self._index

    @currentIndex.setter
    def currentIndex(self, index: int) -> None:
        self._set_index(index)

    def setCurrentIndex(self, index: int) -> None:
        self._set_index(index)

    @property
    def currentText(self) -> str:
        return self._items[self._index][0] if self._index >= 0 else ""

    def setCurrentText(self, text: str) -> None:
        index = self.findText(text)
        if index >= 0:
            self._set_index(index)

    @property
    def currentData(self):
        return self._items[self._index][1] if self._index >= 0 else None

    def itemText(self, i: int) -> str:
        return self._items[i][0] if 0 <= i < len(self._items) else ""

    def itemData(self, i: int):
        return self._items[i][1] if 0 <= i < len(self._items) else None

    def setItemData(self, i: int, value, role: int | None = None) -> None:
        if role == Qt.ToolTipRole:
            self._items[i][2] = value
        else:
            self._items[i][1] = value

    def findText(self, text: str) -> int:
        return next((i for i, item in enumerate(self._items) if item[0] == text), -1)

    def findData(self, data) -> int:
        return next((i for i, item in enumerate(self._items) if item[1] == data), -1)

    def addItem(self, text: str, data=None) -> None:
        self.insertItem(len(self._items), text, data)

    def addItems(self, texts) -> None:
        for t in texts:
            self.addItem(t)

    def insertItem(self, index: int, text: str, data=None) -> None:
        index = max(0, min(index, len(self._items)))
        self._items.insert(index, [text, data, ""])
        if self._index < 0:
            self._set_index(0)  # QComboBox selects its first item
        elif index <= self._index:
            self._index += 1  # the same item stays current (Qt emits nothing)

    def removeItem(self, index: int) -> None:
        del self._items[index]
        if index == self._index:
            self._index = -1
            self._set_index(min(index, len(self._items) - 1))
        elif index < self._index:
            self._index -= 1

    def clear(self) -> None:
        self._items = []
        if self._index != -1:
            self._index = -1
            self._signal("currentIndexChanged").emit(-1)
            self._signal("currentTextChanged").emit("")

    def activate(self, index: int) -> None:
        """What a user's choice in the list does: select it, then ``activated``."""
        if not self.enabled:
            return
        self._set_index(index)
        self._signal("activated").emit(index)


class QProgressBar(QWidget):
    """``minimum``, ``maximum`` and ``value`` are C ints: as properties they wrap (``int_property``), as slot
    arguments a value out of range raises (``int_argument``). A value outside [minimum, maximum] is ignored."""

    SIGNALS = ("valueChanged(int)",)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._min, self._max, self._value = 0, 100, -1
        self.format = "%p%"
        self.textVisible = True

    @property
    def minimum(self) -> int:
        return self._min

    @minimum.setter
    def minimum(self, v) -> None:
        self._set_range(int_property(v), max(int_property(v), self._max))

    @property
    def maximum(self) -> int:
        return self._max

    @maximum.setter
    def maximum(self, v) -> None:
        self._set_range(min(self._min, int_property(v)), int_property(v))

    @property
    def value(self) -> int:
        return self._value

    @value.setter
    def value(self, v) -> None:
        self._set_value(int_property(v))

    def _set_range(self, lo: int, hi: int) -> None:
        self._min, self._max = lo, max(lo, hi)
        # QProgressBar::setRange: "if (d->value < qint64(d->minimum) - 1 || d->value > d->maximum) reset();"
        if self._value < self._min - 1 or self._value > self._max:
            self.reset()

    def _set_value(self, v: int) -> None:
        # QProgressBar::setValue: "if (d->value == value || ((value > d->maximum || value < d->minimum) &&
        # (d->maximum != 0 || d->minimum != 0))) return;"
        if v == self._value or ((v > self._max or v < self._min) and (self._max != 0 or self._min != 0)):
            return
        self._value = v
        self._signal("valueChanged").emit(v)

    def setRange(self, lo: int, hi: int) -> None:
        self._set_range(int_argument(lo, "setRange"), int_argument(hi, "setRange"))

    def setMinimum(self, v: int) -> None:
        self.minimum = int_argument(v, "setMinimum")

    def setMaximum(self, v: int) -> None:
        self.maximum = int_argument(v, "setMaximum")

    def setValue(self, v: int) -> None:
        self._set_value(int_argument(v, "setValue"))

    def reset(self) -> None:
        self._value = self._min - 1

    def setFormat(self, text: str) -> None:
        self.format = text


class QPlainTextEdit(QWidget):
    SIGNALS = ("textChanged()",)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self.readOnly = False
        self.plainText = ""

    def toPlainText(self) -> str:
        return self.plainText

    def setPlainText(self, text: str) -> None:
        self.plainText = text
        self._signal("textChanged").emit()

    def appendPlainText(self, text: str) -> None:
        self.setPlainText(self.plainText + ("\n" if self.plainText else "") + text)

    def clear(self) -> None:
        self.setPlainText("")


class QTextEdit(QPlainTextEdit):
    pass


class QLineEdit(QWidget):
    SIGNALS = ("textChanged(QString)",)

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = text
        self.readOnly = False

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        if value != self._text:
            self._text = value
            self._signal("textChanged").emit(value)


class QGroupBox(QWidget):
    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title


class QTimer(QObject):
    """A timer the test drives: ``fire()`` is one tick (only while active)."""

    SIGNALS = ("timeout()",)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.interval = 0
        self.singleShot_ = False
        self._active = False

    def setInterval(self, msec: int) -> None:
        self.interval = msec

    def setSingleShot(self, value: bool) -> None:
        self.singleShot_ = value

    def start(self, msec: int | None = None) -> None:
        if msec is not None:
            self.interval = msec
        self._active = True

    def stop(self) -> None:
        self._active = False

    def isActive(self) -> bool:
        return self._active

    @property
    def active(self) -> bool:
        return self._active

    def fire(self) -> bool:
        """One tick: emits ``timeout`` if the timer runs; returns whether it did."""
        if not self._active:
            return False
        if self.singleShot_:
            self._active = False
        self._signal("timeout").emit()
        return True

    PENDING: list = []

    @staticmethod
    def singleShot(msec: int, slot: Callable) -> None:
        QTimer.PENDING.append(slot)  # run by the application's processEvents()


class QSettings:
    """Application settings, shared by every instance (as Qt's, per organisation/application)."""

    STORE: dict[str, object] = {}

    def __init__(self, *args) -> None:
        pass

    def value(self, key: str, default=None):
        return QSettings.STORE.get(key, default)

    def setValue(self, key: str, value) -> None:
        QSettings.STORE[key] = value

    def contains(self, key: str) -> bool:
        return key in QSettings.STORE

    def remove(self, key: str) -> None:
        QSettings.STORE.pop(key, None)

    def sync(self) -> None:
        pass


class QFile:
    ReadOnly = 1

    def __init__(self, path: str) -> None:
        self.path = str(path)

    def exists(self) -> bool:
        return os.path.isfile(self.path)

    def open(self, mode: int) -> bool:
        return self.exists()

    def close(self) -> None:
        pass


class QUiLoader:
    """Builds the widgets of a Qt Designer ``.ui`` file from these stand-ins (see ``ui_loader``)."""

    def load(self, qfile: QFile, parent: QWidget | None = None):
        from .ui_loader import load_ui

        return load_ui(Path(qfile.path), parent)


class QFileDialog:
    """Answers queued by the test stand for the user's choice in a file dialog ("" = Cancel)."""

    ANSWERS: list[str] = []

    @staticmethod
    def getOpenFileName(*args) -> str:
        return QFileDialog.ANSWERS.pop(0) if QFileDialog.ANSWERS else ""

    @staticmethod
    def getSaveFileName(*args) -> str:
        return QFileDialog.ANSWERS.pop(0) if QFileDialog.ANSWERS else ""

    @staticmethod
    def getExistingDirectory(*args) -> str:
        return QFileDialog.ANSWERS.pop(0) if QFileDialog.ANSWERS else ""


class QUrl:
    """A URL; ``fromLocalFile`` makes a file:// one."""

    def __init__(self, url: str = "") -> None:
        self.url = url

    @staticmethod
    def fromLocalFile(path: str) -> QUrl:
        return QUrl(Path(path).absolute().as_uri())

    def toLocalFile(self) -> str:
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(self.url).path) if self.url.startswith("file:") else ""

    def toString(self) -> str:
        return self.url


class QDesktopServices:
    """``openUrl`` hands a URL to the desktop (a file browser for a folder); here every call is recorded."""

    OPENED: list[str] = []

    @staticmethod
    def openUrl(url: QUrl) -> bool:
        QDesktopServices.OPENED.append(url.toString())
        return True


class QMessageBox(QWidget):
    Ok, Cancel, Yes, No, Retry, Close = 0x400, 0x400000, 0x4000, 0x10000, 0x80000, 0x200000
    NoIcon, Information, Warning, Critical, Question = 0, 1, 2, 3, 4


class QIcon:
    def __init__(self, path: str = "") -> None:
        self.path = path


class QColor:
    def __init__(self, *args) -> None:
        self.args = args


class QApplication:
    @staticmethod
    def setOverrideCursor(*args) -> None:
        pass

    @staticmethod
    def restoreOverrideCursor() -> None:
        pass


class QCursor:
    def __init__(self, *args) -> None:
        pass


class Qt:
    WaitCursor, ArrowCursor = 3, 0
    ToolTipRole, UserRole, DisplayRole = 3, 256, 0
    ShiftModifier, NoModifier = 0x02000000, 0
    Vertical, Horizontal = 2, 1
    AlignLeft, AlignRight, AlignTop = 1, 2, 0x20


class QSizePolicy:
    Preferred, Expanding, Fixed, Minimum = 5, 7, 0, 1

    def __init__(self, *args) -> None:
        pass
