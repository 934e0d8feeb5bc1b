"""Input files (local or `gs://`), each read whole by one Spark task and mapped by a function.

One task per file keeps a file's rows in file order for the parser
(`batch.trade_files.parse_trade_file`: Kraken CSVs through `features.kraken_formats`, so derived
trade ids match the stream's file replay), and lets the task reduce the file to small results
(`batch.file_results`) before anything crosses into the JVM. The bytes come from:
- a Python data source (`braid_trade_files`) reading through fsspec: local files, and `gs://`
  through gcsfs where no GCS connector is installed (here, and against the GCS emulator); the
  function runs inside the reader, so the bytes never leave the Python worker;
- Spark's `binaryFile` source (Hadoop file systems) then `mapInArrow`: `gs://` on Dataproc
  through the GCS connector.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from batch.object_storage import (
    apply_storage_env,
    expand_paths,
    filesystem_for,
    is_gcs,
    normalize_uri,
    storage_env,
)
from batch.spark_session import gcs_connector_available

FILE_SOURCE_NAME = "braid_trade_files"

FileFunction = Callable[[bytes, str, int], pa.Table]
"""(content, path, source_index) -> result rows of one file."""


class _FilePartition(InputPartition):
    def __init__(self, source_index: int, path: str) -> None:
        super().__init__((source_index, path))
        self.source_index = source_index
        self.path = path


class TradeFilesDataSource(DataSource):
    """`spark.read.format("braid_trade_files")`: a function applied to each file, one task per
    file, reading through fsspec (gcsfs for `gs://`). Options: `paths` (JSON list), `schema`
    (DDL), `function` (cloudpickled, base64), `storage_env` (JSON)."""

    @classmethod
    def name(cls) -> str:
        return FILE_SOURCE_NAME

    def schema(self) -> str:
        return self.options["schema"]

    def reader(self, schema: StructType) -> DataSourceReader:
        return _FileReader(
            json.loads(self.options["paths"]),
            self.options["function"],
            json.loads(self.options.get("storage_env", "{}")),
        )


class _FileReader(DataSourceReader):
    def __init__(self, paths: list[str], function: str, env: dict[str, str]) -> None:
        self.paths = paths
        self.function = function
        self.env = env

    def partitions(self) -> Sequence[InputPartition]:
        return [_FilePartition(i, p) for i, p in enumerate(self.paths)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        from pyspark import cloudpickle

        assert isinstance(partition, _FilePartition)
        apply_storage_env(self.env)
        function: FileFunction = cloudpickle.loads(base64.b64decode(self.function))
        path = partition.path
        fs = filesystem_for(path)
        with fs.open(path[len("gs://") :] if is_gcs(path) else path, "rb") as handle:
            content = handle.read()
        yield from function(content, path, partition.source_index).to_batches()


@dataclass(frozen=True)
class InputFiles:
    """The backfill's input files, in arrival order of files (`source_index`)."""

    paths: list[str]
    through_hadoop: bool  # Spark's binaryFile (Hadoop FS) instead of fsspec in Python

    def map_files(
        self, spark: SparkSession, function: FileFunction, schema: pa.Schema
    ) -> DataFrame:
        """`function` applied to every file's bytes, one Spark task per file."""
        from pyspark.sql.pandas.types import from_arrow_schema

        spark_schema = from_arrow_schema(schema)
        if self.through_hadoop:
            return _map_through_binary_file(spark, self.paths, function, spark_schema)
        if id(spark) not in _REGISTERED:
            spark.dataSource.register(TradeFilesDataSource)
            _REGISTERED.add(id(spark))
        from pyspark import cloudpickle

        return (
            spark.read.format(FILE_SOURCE_NAME)
            .schema(spark_schema)
            .option("schema", spark_schema.simpleString())
            .option("paths", json.dumps(self.paths))
            .option("function", base64.b64encode(cloudpickle.dumps(function)).decode())
            .option("storage_env", json.dumps(storage_env()))
            .load()
        )


FILE_BYTES_SCHEMA = pa.schema(
    [("source_index", pa.int32()), ("path", pa.string()), ("content", pa.binary())]
)


def _file_bytes(content: bytes, path: str, source_index: int) -> pa.Table:
    return pa.table({"source_index": [source_index], "path": [path], "content": [content]},
                    schema=FILE_BYTES_SCHEMA)


def read_file_bytes(spark: SparkSession, patterns: Sequence[str]) -> DataFrame:
    """One row per input file (`source_index, path, content`), for jobs that `mapInArrow` over
    whole files themselves (the sensors backfill). The trades backfill uses `map_files`, which
    avoids moving the bytes through the JVM."""
    return input_files(spark, patterns).map_files(spark, _file_bytes, FILE_BYTES_SCHEMA)


def input_files(
    spark: SparkSession, patterns: Sequence[str], reader: str = "auto"
) -> InputFiles:
    """The files of `patterns` (files, folders or globs, local or `gs://`), numbered in the order
    given (each pattern's matches sorted by name).

    `reader`: `auto` reads `gs://` through Hadoop when the GCS connector is installed
    (Dataproc) and everything else through fsspec in Python; `hadoop` / `python` force one.
    """
    files = list_input_files(spark, patterns)
    if not files:
        raise FileNotFoundError(f"no input files in {list(patterns)}")
    if reader == "auto":
        hadoop = any(is_gcs(f) for f in files) and gcs_connector_available(spark)
    else:
        hadoop = reader == "hadoop"
    return InputFiles(files, hadoop)


def _map_through_binary_file(
    spark: SparkSession, paths: list[str], function: FileFunction, schema: StructType
) -> DataFrame:
    index_of = {_hadoop_path(p): i for i, p in enumerate(paths)}

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for path, content in zip(batch["path"].to_pylist(), batch["content"].to_pylist(),
                                     strict=True):
                index = index_of[_same_form(path, index_of)]
                yield from function(content, path, index).to_batches()

    raw = spark.read.format("binaryFile").load([_hadoop_path(p) for p in paths])
    return raw.select("path", "content").mapInArrow(run, schema)


def _same_form(path: str, known: dict[str, int]) -> str:
    """binaryFile reports `file:/x` for `file:///x`: find the listed form of `path`."""
    if path in known:
        return path
    if path.startswith("file:"):
        bare = "file://" + "/" + path[len("file:") :].lstrip("/")
        if bare in known:
            return bare
    raise KeyError(f"{path} is not one of the input files")


_REGISTERED: set[int] = set()


def list_input_files(spark: SparkSession, patterns: Sequence[str]) -> list[str]:
    """The files of `patterns`, listed through Hadoop on Dataproc (`gs://`), else fsspec."""
    if any(is_gcs(p) for p in patterns) and gcs_connector_available(spark):
        return _hadoop_list(spark, patterns)
    return expand_paths([normalize_uri(p) for p in patterns])


def _hadoop_path(path: str) -> str:
    return path if is_gcs(path) else f"file://{path}"  # an absolute path: file:///x


def _hadoop_list(spark: SparkSession, patterns: Sequence[str]) -> list[str]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    files: list[str] = []
    for pattern in patterns:
        path = jvm.org.apache.hadoop.fs.Path(pattern)
        fs = path.getFileSystem(conf)
        statuses = fs.globStatus(path) or []
        found: list[str] = []
        for status in statuses:
            if status.isDirectory():
                found.extend(str(s.getPath().toString()) for s in fs.listStatus(status.getPath())
                             if s.isFile())
            else:
                found.append(str(status.getPath().toString()))
        files.extend(sorted(f for f in found if not f.rsplit("/", 1)[-1].startswith((".", "_"))))
    return files
