"""dtService core shared by the modules and plugins of this project."""
