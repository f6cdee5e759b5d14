"""The Kubernetes operator (Kopf): scales worker Deployments from the queue depth
(WorkerPool resources) and reports worker pods that died to the dispatcher."""
