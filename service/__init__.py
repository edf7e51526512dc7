"""The priorviz.v1 gRPC server: config, codec (proto <-> engine), validation, errors, jobs, auth, observability."""
