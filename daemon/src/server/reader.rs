//! A connection's read side: buffered (as tokio's `BufReader`), and able to take what
//! the kernel already holds for the socket without waiting for the reactor
//! ([`ConnReader::try_fill`]), so that a connection just answered can poll its socket
//! for the next call for a few microseconds instead of going to sleep and being woken.

use std::{
    io,
    os::fd::AsRawFd,
    pin::Pin,
    task::{ready, Context, Poll},
};

use tokio::{
    io::{AsyncBufRead, AsyncRead, ReadBuf},
    net::unix::OwnedReadHalf,
};

/// The read half of a connection with its buffer.
pub(super) struct ConnReader {
    half: OwnedReadHalf,
    buf: Box<[u8]>,
    /// What of `buf` is read but not yet consumed.
    pos: usize,
    filled: usize,
    /// The peer closed its side, as seen by [`ConnReader::try_fill`].
    eof: bool,
}

impl ConnReader {
    /// A reader of `half` with a buffer of `capacity` bytes.
    pub(super) fn new(half: OwnedReadHalf, capacity: usize) -> ConnReader {
        ConnReader {
            half,
            buf: vec![0; capacity].into_boxed_slice(),
            pos: 0,
            filled: 0,
            eof: false,
        }
    }

    /// What is read and not yet consumed.
    pub(super) fn buffer(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// Takes what the socket holds now, without waiting: true when there is something
    /// to read (bytes, or the end of the stream), false when nothing has come yet.
    pub(super) fn try_fill(&mut self) -> io::Result<bool> {
        if self.pos < self.filled || self.eof {
            return Ok(true);
        }
        let fd = self.half.as_ref().as_raw_fd();
        // SAFETY: a non-blocking recv on the connection's own open socket, into this
        // reader's buffer and within its length. Epoll is edge-triggered, so taking
        // bytes here loses no later wake-up: the reactor's next read finds nothing and
        // waits for the next edge.
        let n = unsafe {
            libc::recv(
                fd,
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => {
                self.eof = true;
                Ok(true)
            }
            n if n > 0 => {
                (self.pos, self.filled) = (0, n as usize);
                Ok(true)
            }
            _ => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                e if e.kind() == io::ErrorKind::Interrupted => Ok(false),
                e => Err(e),
            },
        }
    }
}

impl AsyncRead for ConnReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(out.remaining());
        out.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncBufRead for ConnReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.pos >= this.filled && !this.eof {
            let mut rb = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.half).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            (this.pos, this.filled) = (0, n);
        }
        Poll::Ready(Ok(&this.buf[this.pos..this.filled]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.filled);
    }
}
