"""The face kernel shared by every service that looks at faces: detection and embedding (`encoders`), the engine
that scores identity (`engine`), per-encoder calibration (`calibration`), its settings (`settings`) and the
mapping of its results to protobuf (`proto`). Imports stay lazy: `import idlock.faces` loads no model code."""
