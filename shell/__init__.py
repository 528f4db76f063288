"""convocate: the operator's console, the status service and the router to agents."""
