"""Build a Qt Designer ``.ui`` file from the stand-in widgets: classes, names, properties, items, connections."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from . import ctk_standin, mrml_widgets
from . import qt_standin as qt


def widget_class(name: str) -> type:
    """The stand-in class for a Designer class name (an unknown name fails, as QUiLoader does)."""
    for module in (qt, ctk_standin, mrml_widgets):
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    raise RuntimeError(f"QUiLoader: no widget class {name}")


def _value(prop: ET.Element):
    el = next(iter(prop))
    tag, text = el.tag, el.text or ""
    if tag == "string":
        return text
    if tag == "bool":
        return text == "true"
    if tag == "number":
        return int(text)
    if tag == "double":
        return float(text)
    if tag == "stringlist":
        return [s.text or "" for s in el.findall("string")]
    if tag in ("enum", "set"):
        return text
    return None  # sizes, fonts, ... do not matter here


def _build(el: ET.Element, parent: qt.QWidget | None, names: dict) -> qt.QWidget:
    widget = widget_class(el.get("class"))(parent)
    widget.objectName = el.get("name", "")
    names[widget.objectName] = widget
    for child in el:
        if child.tag == "property":
            value = _value(child)
            if value is not None:
                widget.setProperty(child.get("name"), value)
        elif child.tag == "item" and isinstance(widget, qt.QComboBox):
            text = next((p for p in child.findall("property") if p.get("name") == "text"), None)
            widget.addItem(_value(text) if text is not None else "")
        elif child.tag == "layout":
            widget.setLayout(_layout(child, widget, names))
        elif child.tag == "widget":
            _build(child, widget, names)
    return widget


def _layout(el: ET.Element, owner: qt.QWidget, names: dict) -> qt.QLayout:
    layout = widget_class(el.get("class"))()
    layout.objectName = el.get("name", "")
    layout._owner = owner
    for item in el.findall("item"):
        for child in item:
            if child.tag == "widget":
                layout.addWidget(_build(child, owner, names))
            elif child.tag == "layout":
                layout.addLayout(_layout(child, owner, names))
    return layout


def load_ui(path: Path, parent: qt.QWidget | None = None) -> qt.QWidget:
    """The top widget of ``path`` with its children; the file's signal/slot connections are made."""
    root = ET.parse(path).getroot()
    names: dict[str, qt.QWidget] = {}
    top = _build(root.find("widget"), parent, names)
    for c in root.iter("connection"):
        sender, receiver = names[c.findtext("sender")], names[c.findtext("receiver")]
        slot = getattr(receiver, c.findtext("slot").split("(")[0])
        sender.connect(c.findtext("signal"), slot)
    return top
