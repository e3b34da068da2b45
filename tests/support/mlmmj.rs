//! mlmmj list directories made with `mlmmj-make-ml`, for the importer's tests (being built).
