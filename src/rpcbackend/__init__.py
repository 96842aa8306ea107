"""rpcbackend."""
