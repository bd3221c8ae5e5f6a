"""From requests and history, through a template, to an engine and back: batch, stream and the chat session."""
