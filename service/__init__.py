"""priorviz server side: target models, objectives, transforms, the render loop and the gRPC service."""
