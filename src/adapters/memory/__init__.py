"""In-memory twins of every port: the embedded default and the unit tests' fakes."""
