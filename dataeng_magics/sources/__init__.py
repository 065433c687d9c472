"""Client source files: the first rows and schema of each, in constant time."""
