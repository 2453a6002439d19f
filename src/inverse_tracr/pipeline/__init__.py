"""Running the stages together: progress from the store (`status`); later the local runner and Argo submission."""
