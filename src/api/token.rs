//! The API token: the configured one, or one generated once into `data_dir/api-token`.

/// The API token: the configured one, else the one generated into `data_dir/api-token` at
/// first start (mode 0600).
pub fn token(configured: Option<&str>, data_dir: &std::path::Path) -> std::io::Result<String> {
    if let Some(token) = configured {
        return Ok(token.to_string());
    }
    let path = data_dir.join("api-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut bytes = [0u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    let token = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut file, token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}
