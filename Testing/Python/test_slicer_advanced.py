"""Advanced section: lambda unit, output HU map and search resolution, with the engine's defaults, reach the engine."""

from __future__ import annotations

from slicer_module_stand import NAME, SKIP, load_volume

from CTCounterfactualLib import cli, params

pytestmark = SKIP
# panel parameter -> (selector, the engine's choices, the engine's default, the parsed CLI argument)
OPTIONS = {
    "lambdaScale": ("lambdaScaleSelector", params.LAMBDA_SCALES, params.DEFAULT_LAMBDA_SCALE, "lambda_scale"),
    "outputMap": ("outputMapSelector", params.OUTPUT_MAPS, params.DEFAULT_OUTPUT_MAP, "output_map"),
    "searchResolution": (
        "searchResolutionSelector",
        params.SEARCH_RESOLUTIONS,
        params.DEFAULT_SEARCH_RESOLUTION,
        "search_resolution",
    ),
}


def _parsed(widget, tmp_path):
    """The engine's own parser reading the command the panel would run now."""
    from CTCounterfactualScene.engine_process import explain_command

    request = widget.logic.request(widget._parameterNode, str(tmp_path / "in.nrrd"), str(tmp_path / "out"))
    return cli.build_parser().parse_args(explain_command(request, python="PythonSlicer")[3:])


def test_new_options_have_the_engines_defaults_and_reach_the_engine(slicer_app, small_ct, tmp_path):
    load_volume(slicer_app, small_ct, "chest")
    widget = slicer_app.open_panel(NAME)
    ui, p = widget.ui, widget._parameterNode
    advanced = ui.advancedCollapsibleButton.findChildren(type(ui.deviceSelector))
    args = _parsed(widget, tmp_path)
    for name, (selector, choices, default, arg) in OPTIONS.items():
        combo = getattr(ui, selector)
        assert combo in advanced and combo.toolTip, selector
        assert tuple(combo.itemText(i) for i in range(combo.count)) == choices
        assert getattr(p, name) == default == combo.currentText and getattr(args, arg) == default

    chosen = {}
    for name, (selector, choices, default, _arg) in OPTIONS.items():
        chosen[name] = next(c for c in reversed(choices) if c != default)
        getattr(ui, selector).setCurrentText(chosen[name])  # the user picks another value
    args = _parsed(widget, tmp_path)
    for name, (_selector, _choices, _default, arg) in OPTIONS.items():
        assert getattr(p, name) == chosen[name] and getattr(args, arg) == chosen[name], name
