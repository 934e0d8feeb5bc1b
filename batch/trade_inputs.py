"""Input files (local or `gs://`) -> a Spark DataFrame of their bytes, one row per file.

Each file is read whole, as one row, so one task parses it in file order
(`batch.trade_files.parse_trade_file`: Kraken CSVs through `features.kraken_formats`, so derived
trade ids match the stream's file replay). The bytes come from:
- Spark's `binaryFile` source (Hadoop file systems): local files, and `gs://` on Dataproc
  through the GCS connector;
- a small Python data source (`braid_trade_files`) reading through fsspec/gcsfs, for `gs://`
  where no GCS connector is installed (here, and against the GCS emulator).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

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

FILE_BYTES_SCHEMA = "source_index INT, path STRING, content BINARY"
FILE_SOURCE_NAME = "braid_trade_files"


class _FilePartition(InputPartition):
    def __init__(self, source_index: int, path: str) -> None:
        super().__init__((source_index, path))
        self.source_index = source_index
        self.path = path


class TradeFilesDataSource(DataSource):
    """`spark.read.format("braid_trade_files").option("paths", json_list)`: one row per file."""

    @classmethod
    def name(cls) -> str:
        return FILE_SOURCE_NAME

    def schema(self) -> str:
        return FILE_BYTES_SCHEMA

    def reader(self, schema: StructType) -> DataSourceReader:
        return _FileBytesReader(
            json.loads(self.options["paths"]), json.loads(self.options.get("storage_env", "{}"))
        )


class _FileBytesReader(DataSourceReader):
    def __init__(self, paths: list[str], env: dict[str, str]) -> None:
        self.paths = paths
        self.env = env

    def partitions(self) -> Sequence[InputPartition]:
        return [_FilePartition(i, p) for i, p in enumerate(self.paths)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, _FilePartition)
        path = partition.path
        apply_storage_env(self.env)
        fs = filesystem_for(path)
        with fs.open(path[len("gs://") :] if is_gcs(path) else path, "rb") as handle:
            content = handle.read()
        yield pa.RecordBatch.from_pydict(
            {"source_index": [partition.source_index], "path": [path], "content": [content]},
            schema=pa.schema(
                [("source_index", pa.int32()), ("path", pa.string()), ("content", pa.binary())]
            ),
        )


def read_file_bytes(spark: SparkSession, patterns: Sequence[str]) -> DataFrame:
    """One row per input file (`source_index, path, content`), for `batch.file_results`.

    Patterns are files, folders or globs, local or `gs://`; `source_index` numbers the files in
    the order given (each pattern's matches sorted by name).
    """
    from pyspark.sql import functions as F

    files = list_input_files(spark, patterns)
    if not files:
        raise FileNotFoundError(f"no input files in {list(patterns)}")
    through_hadoop = all(not is_gcs(f) for f in files) or gcs_connector_available(spark)
    if through_hadoop:
        frames = [
            spark.read.format("binaryFile").load(_hadoop_path(path))
            .select(F.lit(index).cast("int").alias("source_index"), F.lit(path).alias("path"),
                    "content")
            for index, path in enumerate(files)
        ]
        raw = frames[0]
        for frame in frames[1:]:
            raw = raw.unionByName(frame)
    else:
        if id(spark) not in _REGISTERED:
            spark.dataSource.register(TradeFilesDataSource)
            _REGISTERED.add(id(spark))
        raw = (
            spark.read.format(FILE_SOURCE_NAME)
            .option("paths", json.dumps(files))
            .option("storage_env", json.dumps(storage_env()))
            .load()
        )
    return raw


_REGISTERED: set[int] = set()


def list_input_files(spark: SparkSession, patterns: Sequence[str]) -> list[str]:
    """The files of `patterns`, listed through Hadoop on Dataproc (`gs://`), else fsspec."""
    if any(is_gcs(p) for p in patterns) and gcs_connector_available(spark):
        return _hadoop_list(spark, patterns)
    return expand_paths([normalize_uri(p) for p in patterns])


def _hadoop_path(path: str) -> str:
    return path if is_gcs(path) else f"file://{path}"


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
