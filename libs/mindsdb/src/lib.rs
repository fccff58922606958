//! MindsDB client, safe SQL builder and adapters (arriving with the MindsDB backbone).
