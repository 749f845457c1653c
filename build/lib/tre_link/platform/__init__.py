"""The platform layer: config, the SparkSession factory, Delta I/O, keys, errors, paths,
disclosure control, HMAC in Spark SQL, and the one adapter to Splink's internals. It imports
nothing from the four parts above it."""
