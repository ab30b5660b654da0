"""Sample Data offers the bundled demo chest CT from startup; one click loads it and the panel takes it as input."""

from __future__ import annotations

import hashlib
import os

import numpy as np
from mrml_scene import voxels
from slicer_module_stand import NAME, SKIP

from CTCounterfactualLib.data.demo_ct import DEMO_CT
from CTCounterfactualLib.data.volume_io import read_volume

pytestmark = SKIP
SAMPLE = "CTCounterfactual demo chest CT"


def test_demo_ct_is_a_sample_and_loads_in_one_click(slicer_app):
    import SampleData

    before = hashlib.sha256(DEMO_CT.read_bytes()).hexdigest()
    (source,) = SampleData.SampleDataLogic.sampleDataSourcesByCategory("CT Counterfactual")
    assert source.sampleName == SAMPLE and source.uris == [DEMO_CT.as_uri()]  # local: no network
    assert source.checksums == [f"SHA256:{before}"] and source.loadFileTypes == ["VolumeFile"]
    assert source.thumbnailFileName and os.path.isfile(source.thumbnailFileName)

    node = SampleData.downloadSample(SAMPLE)  # the click on the thumbnail
    assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetName() == "CTCounterfactualDemoChestCT"
    ct = read_volume(DEMO_CT)
    assert np.array_equal(voxels(node), ct.array)
    assert hashlib.sha256(DEMO_CT.read_bytes()).hexdigest() == before  # the bundled file is only read

    widget = slicer_app.open_panel(NAME)  # the user opens the module next: the demo CT is the input
    assert widget._parameterNode.inputVolume.GetID() == node.GetID()


def test_registering_again_keeps_one_entry(slicer_app):
    """A second startupCompleted (e.g. the module reloaded) does not list the sample twice."""
    import SampleData

    slicer_app.startup_completed()
    assert [s.sampleName for s in SampleData.SampleDataLogic.sampleDataSourcesByCategory("CT Counterfactual")] == [
        SAMPLE
    ]
