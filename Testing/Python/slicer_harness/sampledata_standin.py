"""Stand-in for Slicer's SampleData module (Modules/Scripted/SampleData/SampleData.py) as extensions use it.

Faithful to Slicer 5.10/5.12 where an extension depends on it: ``SampleDataLogic.registerCustomSampleDataSource``
with the real signature (``loadFileTypes``, and ``loadFileType`` kept for backward compatibility) stores a
``SampleDataSource`` in ``slicer.modules.sampleDataSources[category]`` (a source registered twice is kept once);
``downloadSample(name)`` (the click on the sample's thumbnail) fetches each URI with ``urllib`` into the cache
folder, verifies a given checksum, and loads the file with ``slicer.util.loadNodeFromFile`` under its node name.
Scenes, zip files and custom downloaders, which this project does not register, are not modelled.
"""

from __future__ import annotations

import os
import urllib.request

import slicer


def _listify(value, count: int | None = None) -> list:
    if value is None:
        return [None] * (count or 1)
    return list(value) if isinstance(value, (list, tuple)) else [value]


class SampleDataSource:
    """One sample: its name, where its files come from, and how they load."""

    def __init__(
        self,
        sampleName=None,
        sampleDescription=None,
        uris=None,
        fileNames=None,
        nodeNames=None,
        checksums=None,
        loadFiles=None,
        customDownloader=None,
        thumbnailFileName=None,
        loadFileTypes=None,
        loadFileProperties=None,
    ) -> None:
        self.sampleName = sampleName
        self.sampleDescription = sampleDescription if sampleDescription is not None else sampleName
        self.uris = _listify(uris)
        n = len(self.uris)
        self.fileNames = _listify(fileNames, n)
        self.nodeNames = _listify(nodeNames, n)
        self.checksums = _listify(checksums, n)
        self.loadFiles = _listify(loadFiles, n)
        self.loadFileTypes = _listify(loadFileTypes, n)
        self.customDownloader = customDownloader
        self.thumbnailFileName = thumbnailFileName
        self.loadFileProperties = dict(loadFileProperties or {})
        if not len(self.fileNames) == len(self.nodeNames) == len(self.checksums) == n:
            raise ValueError(f"uris, fileNames, nodeNames and checksums of {sampleName!r} differ in length")

    def __eq__(self, other) -> bool:
        return isinstance(other, SampleDataSource) and str(self) == str(other)

    def __str__(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in sorted(vars(self).items()))


class SampleDataLogic:
    """Manages ``slicer.modules.sampleDataSources`` and loads a sample into the scene."""

    @staticmethod
    def registerCustomSampleDataSource(
        category="Custom",
        sampleName=None,
        uris=None,
        fileNames=None,
        nodeNames=None,
        customDownloader=None,
        thumbnailFileName=None,
        loadFileTypes=None,
        loadFiles=None,
        loadFileProperties={},  # noqa: B006 (Slicer's signature)
        checksums=None,
        loadFileType=None,
    ) -> None:
        if loadFileType is not None and loadFileTypes is not None:
            raise ValueError("loadFileType and loadFileTypes cannot be specified at the same time")
        if loadFileType is not None:
            loadFileTypes = loadFileType
        sources = SampleDataLogic.sampleDataSourcesByCategory()
        sources.setdefault(category, [])
        source = SampleDataSource(
            sampleName=sampleName,
            uris=uris,
            fileNames=fileNames,
            nodeNames=nodeNames,
            thumbnailFileName=thumbnailFileName,
            loadFileTypes=loadFileTypes,
            loadFiles=loadFiles,
            loadFileProperties=loadFileProperties,
            checksums=checksums,
            customDownloader=customDownloader,
        )
        if source not in sources[category]:
            sources[category].append(source)

    @staticmethod
    def sampleDataSourcesByCategory(category=None):
        if not hasattr(slicer.modules, "sampleDataSources"):
            slicer.modules.sampleDataSources = {}
        if category is None:
            return slicer.modules.sampleDataSources
        return slicer.modules.sampleDataSources.get(category, [])

    def sourceForSampleName(self, sampleName):
        for sources in self.sampleDataSourcesByCategory().values():
            for source in sources:
                if source.sampleName == sampleName:
                    return source
        return None

    def downloadSample(self, sampleName):
        return self.downloadSamples(sampleName)[0]

    def downloadSamples(self, sampleName):
        source = self.sourceForSampleName(sampleName)
        return self.downloadFromSource(source) if source else []

    def downloadFromSource(self, source, maximumAttemptsCount=3, forceDownload=False):
        nodes, paths = [], []
        for uri, fileName, nodeName, checksum, loadFile, loadFileType in zip(
            source.uris,
            source.fileNames,
            source.nodeNames,
            source.checksums,
            source.loadFiles,
            source.loadFileTypes,
            strict=False,
        ):
            path = self.downloadFileIntoCache(uri, fileName, checksum, forceDownload)
            if nodeName and loadFile is not False:
                properties = dict(source.loadFileProperties, name=nodeName)
                nodes.append(slicer.util.loadNodeFromFile(path, loadFileType, properties))
            else:
                paths.append(path)
        return nodes or paths

    def downloadFileIntoCache(self, uri, name, checksum=None, forceDownload=False):
        folder = os.path.join(slicer.app.temporaryPath, "RemoteIO")  # Slicer: the scene's remote cache folder
        os.makedirs(folder, exist_ok=True)
        return self.downloadFile(uri, folder, name, checksum, forceDownload)

    def downloadFile(self, uri, destFolderPath, name, checksum=None, forceDownload=False):
        path = destFolderPath + "/" + name
        algo, digest = slicer.util.extractAlgoAndDigest(checksum)
        stale = algo is not None and os.path.exists(path) and slicer.util.computeChecksum(algo, path) != digest
        if forceDownload or stale or not os.path.exists(path) or os.stat(path).st_size == 0:
            urllib.request.urlretrieve(uri, path)
        if algo is not None and slicer.util.computeChecksum(algo, path) != digest:
            raise ValueError(f"checksum of {name} does not match {checksum}")
        return path


def downloadSample(sampleName):
    """The user clicks the sample's thumbnail in the Sample Data module."""
    return SampleDataLogic().downloadSample(sampleName)
